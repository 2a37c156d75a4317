"""Turn the JSON of a run into the markdown table and the plot."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

OURS = "pixmo-stream"


@dataclass(frozen=True)
class Row:
    key: str
    label: str
    unit: str
    value: Callable[[dict[str, Any]], float | None]
    higher_is_better: bool = True
    goal: str = ""
    # goal check: (ours, best peer value, all contenders' values) -> holds?
    check: Callable[[float, float | None, dict[str, float]], bool] | None = None
    scale: float = 1.0  # multiply for display (seconds -> ms)


def _get(*path: str) -> Callable[[dict[str, Any]], float | None]:
    def f(res: dict[str, Any]) -> float | None:
        cur: Any = res
        for p in path:
            if not isinstance(cur, dict) or p not in cur:
                return None
            cur = cur[p]
        return float(cur) if isinstance(cur, int | float) and not math.isnan(cur) else None

    return f


def _faster(factor: float) -> Callable[[float, float | None, dict[str, float]], bool]:
    return lambda ours, best, _all: best is not None and ours >= factor * best


def _under(limit: float) -> Callable[[float, float | None, dict[str, float]], bool]:
    return lambda ours, _best, _all: ours < limit


ROWS = [
    Row(
        "scan",
        "full scan, images undecoded",
        "rec/s",
        _get("scan", "rec_per_s"),
        goal="≥ 5x fastest peer",
        check=_faster(5),
    ),
    Row(
        "scan_read",
        "full scan, every image's bytes taken (memoryview)",
        "rec/s",
        _get("scan_read", "rec_per_s"),
    ),
    Row("cold_scan", "full scan, cold page cache", "rec/s", _get("cold_scan", "rec_per_s")),
    Row(
        "captions",
        "captions-only scan",
        "rec/s",
        _get("captions", "rec_per_s"),
        goal="≥ 2x Parquet column read",
        check=lambda o, _b, a: "parquet" in a and o >= 2 * a["parquet"],
    ),
    Row(
        "random_access",
        "random access (1 record per lookup)",
        "rec/s",
        _get("random_access", "rec_per_s"),
    ),
    Row(
        "write",
        "conversion (write)",
        "rec/s",
        _get("write", "rec_per_s"),
        goal="≥ 3x fastest peer",
        check=_faster(3),
    ),
    Row(
        "size",
        "on-disk size",
        "MB",
        _get("size", "bytes"),
        higher_is_better=False,
        goal="≤ MDS + zstd",
        check=lambda o, _b, a: "mds-zstd" in a and o <= a["mds-zstd"],
        scale=1e-6,
    ),
    Row(
        "open_first",
        "open + first record",
        "ms",
        _get("open_first", "seconds", "median"),
        higher_is_better=False,
        goal="< 50 ms",
        check=_under(0.05),
        scale=1e3,
    ),
    Row(
        "cold_open_first",
        "open + first record, cold",
        "ms",
        _get("cold_open_first", "seconds", "median"),
        higher_is_better=False,
        goal="< 50 ms",
        check=_under(0.05),
        scale=1e3,
    ),
    Row(
        "loader_w0_raw",
        "DataLoader shuffled, 0 workers, undecoded",
        "rec/s",
        _get("loader_w0_raw", "steady_rec_per_s", "median"),
        goal="≥ 5x fastest peer",
        check=_faster(5),
    ),
    Row(
        "loader_w0_epoch",
        "DataLoader shuffled, 0 workers, undecoded, a whole epoch",
        "rec/s",
        _get("loader_w0_epoch", "steady_rec_per_s", "median"),
        goal="≥ 5x fastest peer",
        check=_faster(5),
    ),
    Row(
        "loader_w2_raw",
        "DataLoader shuffled, 2 workers, undecoded",
        "rec/s",
        _get("loader_w2_raw", "steady_rec_per_s", "median"),
        goal="≥ 5x fastest peer",
        check=_faster(5),
    ),
    Row(
        "loader_w0_decoded",
        "DataLoader shuffled, 0 workers, JPEG decoded",
        "rec/s",
        _get("loader_w0_decoded", "steady_rec_per_s", "median"),
    ),
    Row(
        "loader_w2_decoded",
        "DataLoader shuffled, 2 workers, JPEG decoded",
        "rec/s",
        _get("loader_w2_decoded", "steady_rec_per_s", "median"),
    ),
    Row(
        "first_batch_w0",
        "time to first batch, 0 workers",
        "ms",
        _get("loader_w0_raw", "first_batch_s", "median"),
        higher_is_better=False,
        goal="< 100 ms",
        check=_under(0.1),
        scale=1e3,
    ),
    Row(
        "first_batch_w2",
        "time to first batch, 2 workers",
        "ms",
        _get("loader_w2_raw", "first_batch_s", "median"),
        higher_is_better=False,
        goal="< 100 ms",
        check=_under(0.1),
        scale=1e3,
    ),
    Row(
        "scan_mem",
        "peak memory of a full scan",
        "MB",
        _get("scan", "peak_mem"),
        higher_is_better=False,
        scale=1e-6,
    ),
]
# (The writer's peak memory is in the JSON, not the table: LitData writes in worker
# processes, which the writing process's own figure cannot see.)

# Where each row's figures live in a contender's results (to say why a cell is empty).
SOURCE = {
    "scan": ("scan", "seconds"),
    "scan_read": ("scan_read", "seconds"),
    "cold_scan": ("cold_scan", "seconds"),
    "captions": ("captions", "seconds"),
    "random_access": ("random_access", "seconds"),
    "write": ("write", "seconds"),
    "size": ("size", None),
    "open_first": ("open_first", "seconds"),
    "cold_open_first": ("cold_open_first", "seconds"),
    "loader_w0_raw": ("loader_w0_raw", "steady_rec_per_s"),
    "loader_w0_epoch": ("loader_w0_epoch", "steady_rec_per_s"),
    "loader_w2_raw": ("loader_w2_raw", "steady_rec_per_s"),
    "loader_w0_decoded": ("loader_w0_decoded", "steady_rec_per_s"),
    "loader_w2_decoded": ("loader_w2_decoded", "steady_rec_per_s"),
    "first_batch_w0": ("loader_w0_raw", "first_batch_s"),
    "first_batch_w2": ("loader_w2_raw", "first_batch_s"),
    "scan_mem": ("scan", None),
}


def _why_missing(res: dict[str, Any], row: Row) -> str:
    if "na" in res:
        return res["na"]
    if row.key == "size":
        section = res.get("write", {})
    else:
        section = res.get(SOURCE[row.key][0], {})
    if "na" in section:
        na = section["na"]
        return na if na.startswith("n/a") else f"n/a ({na})"
    if "error" in section:
        return "error"
    if "write" in res and "error" in res["write"]:
        return "error"
    return "n/a"


def _fmt(x: float) -> str:
    if x >= 100:
        return f"{x:,.0f}"
    if x >= 10:
        return f"{x:.1f}"
    return f"{x:.2f}"


def table(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """One entry per row: values per contender, the ratio to the best peer, goal status."""
    cs = doc["contenders"]
    out = []
    for row in ROWS:
        vals = {name: v for name, res in cs.items() if (v := row.value(res)) is not None}
        peers = {k: v for k, v in vals.items() if k != OURS}
        best_name = None
        if peers:
            pick = max if row.higher_is_better else min
            best_name = pick(peers, key=peers.__getitem__)
        best = peers.get(best_name) if best_name else None
        ratios = {}
        for k, v in vals.items():
            if best and v:
                ratios[k] = v / best if row.higher_is_better else best / v
        holds = None
        if row.check and OURS in vals:
            holds = row.check(vals[OURS], best, vals)
        out.append(
            {"row": row, "values": vals, "ratios": ratios, "best_peer": best_name, "holds": holds}
        )
    return out


def markdown(doc: dict[str, Any]) -> str:
    cs = doc["contenders"]
    names = list(cs)
    m, d, lim = doc["machine"], doc["data"], doc["limits"]
    lines = [
        "# pixmo-stream vs its peers",
        "",
        f"`{doc['command']}` — {doc['date']}, {doc['wall_seconds']:.0f} s.  ",
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, {m['os']}, "
        f"Python {m['python']}.  ",
        f"Data: {d['records']:,} synthetic PixMo-like records (preset `{d['preset']}`, seed "
        f"{d['seed']}), {d['image_bytes'] / 1e6:,.0f} MB of JPEG "
        f"(mean {d['mean_image_kb']:.0f} KB), {d['caption_bytes'] / 1e6:,.1f} MB of captions.  ",
        "Each cell: the median of "
        f"{doc['config']['repeats']} runs (writes: {doc['config']['write_repeats']}), and in "
        "parentheses how it compares with the best peer (>1x: better than every peer). "
        "Min-max of every figure is in `latest.json`.",
        "",
    ]
    head = ["measurement", *(cs[n]["label"] for n in names), "goal", "holds?"]
    lines.append("| " + " | ".join(head) + " |")
    lines.append("|" + "---|" * len(head))
    for entry in table(doc):
        row: Row = entry["row"]
        cells = [f"{row.label} ({row.unit})"]
        for n in names:
            v = entry["values"].get(n)
            if v is None:
                cells.append(_why_missing(cs[n], row))
                continue
            cell = _fmt(v * row.scale)
            r = entry["ratios"].get(n)
            if r is not None:
                cell += f" ({r:.2f}x)" if r >= 0.01 else " (<0.01x)"
            if n == entry["best_peer"]:
                cell = f"**{cell}**"
            cells.append(cell)
        cells.append(row.goal or "")
        h = entry["holds"]
        cells.append("" if not row.goal else ("n/a" if h is None else ("yes" if h else "**no**")))
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "Bold: the best peer of each row. Rates count records (one image with all its "
        "annotations). Loader rates are steady-state (after the first batch; over the whole "
        "run when fewer than 8 batches follow it), batches of "
        f"{doc['config']['batch_size']}, shuffle on, up to {doc['config']['loader_records']:,} "
        f"records undecoded and {doc['config']['decoded_records']:,} decoded (PIL, RGB).",
        "",
        "## The machine's own limits (same run)",
        "",
    ]
    pc = lim.get("pagecache_read")
    if pc:
        lines.append(
            f"- page-cache read of {pc['of']}'s {pc['bytes'] / 1e6:,.0f} MB: "
            f"{pc['gb_per_s']:.2f} GB/s ({d['records'] / pc['seconds']['min']:,.0f} rec/s "
            "if a scan did nothing but read the bytes)"
        )
    fw = lim.get("file_write")
    if fw:
        lines.append(
            f"- file write of the {fw['bytes'] / 1e6:,.0f} MB of images, one write each, no "
            f"fsync: {fw['gb_per_s']:.2f} GB/s ({d['records'] / fw['seconds']['median']:,.0f} "
            "rec/s if a writer did nothing but write the image bytes)"
        )
    lines.append(f"- memory copy: {lim['memcpy']['gb_per_s']:.1f} GB/s")
    jd = lim["jpeg_decode"]
    for dec in ("pil", "simplejpeg"):
        if isinstance(jd.get(dec), dict):
            lines.append(
                f"- JPEG decode, one core, {dec}: {jd[dec]['images_per_s']:,.0f} images/s "
                f"({jd[dec]['megapixels_per_s']:.0f} MP/s) on {jd['images']} of these images"
            )
        elif dec in jd:
            lines.append(f"- JPEG decode, {dec}: {jd[dec]}")
    lines.append(f"- cold page cache: {lim.get('cold_cache', 'n/a')}")
    lines.append(f"- generating the data: {d['generate_seconds']:.1f} s")
    notes = []
    for n in names:
        res = cs[n]
        for k, v in res.items():
            if isinstance(v, dict) and "error" in v:
                notes.append(f"- {res['label']}, {k}: error: {v['error'][:300]}")
        if "child_error" in res:
            notes.append(f"- {res['label']}: reader process: {res['child_error'][-300:]!r}")
    if notes:
        lines += ["", "## Errors", "", *notes]
    versions = ", ".join(f"{k} {v}" for k, v in m["packages"].items() if v)
    lines += ["", f"Versions: {versions}.", ""]
    return "\n".join(lines)


def plot(doc: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, NullFormatter

    # Peak memory stays in the table only: its small absolute values make ratios misleading.
    entries = [e for e in table(doc) if e["ratios"] and e["row"].key != "scan_mem"]
    if not entries:  # nothing to compare (no peer measured)
        return
    names = list(doc["contenders"])
    labels = {n: doc["contenders"][n]["label"] for n in names}
    cols = 4
    rows = math.ceil(len(entries) / cols)
    fig, axes = plt.subplots(
        rows, cols, figsize=(4.2 * cols, 0.32 * len(names) * rows + 1.2 * rows)
    )
    axes = axes.flatten()
    for ax, e in zip(axes, entries, strict=False):
        row: Row = e["row"]
        shown = [n for n in names if n in e["ratios"]]
        vals = [e["ratios"][n] for n in shown]
        colors = ["#d62728" if n == OURS else "#7f7f7f" for n in shown]
        y = range(len(shown))
        ax.barh(list(y), vals, color=colors)
        ax.set_yticks(list(y), [labels[n] for n in shown], fontsize=7)
        ax.invert_yaxis()
        ax.set_xscale("log")
        ax.axvline(1.0, color="black", lw=0.8)
        for yi, v in zip(y, vals, strict=True):
            ax.text(v, yi, f" {v:.2g}x", va="center", fontsize=6)
        title = row.label
        if e["holds"] is not None:
            title += f"\n{row.goal}: {'yes' if e['holds'] else 'NO'}"
        ax.set_title(title, fontsize=8)
        ax.tick_params(axis="x", labelsize=6)
        ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _pos: f"{x:g}x"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        lo, hi = min(vals), max(vals)
        ax.set_xlim(min(lo, 1) / 2, max(hi, 1) * 3)
    for ax in axes[len(entries) :]:
        ax.axis("off")
    d = doc["data"]
    fig.suptitle(
        f"pixmo-stream (red) vs peers, relative to the best peer (1x; right is better) — "
        f"{d['records']:,} records, {doc['machine']['cores']} cores",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
