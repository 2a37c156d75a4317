"""Packed against unpacked Molmo batches, through the real stream.

    python -m benches.packing_stream                  # 400 PixMo-sized images, about a minute
    python -m benches.packing_stream --records 120    # quicker

In one run, on the pixmo-points data of ``benches.molmo_batches`` (its ``make_data``, cached
under ``benches/out/molmo_batches``), ``pixmo_stream.molmo.Batches`` streams one epoch through
``pixmo_stream.DataLoader`` (0 workers) in each layout:

- **unpacked**: Molmo v1's layout, ``batch_size`` examples per step, every row padded to
  2,304 tokens and 13 crops (12 and the global view);
- **packed**: ``pack=Packing(max_tokens, max_crops, rows_per_batch)`` for each token budget,
  ``rows_per_batch`` rows per step (as many as make ``--step-tokens`` tokens). The crop budget
  is, unless given, the one that matches the data's mix: the token budget times the data's
  crops per token (from the packing costs), rounded up to a multiple of 8, so that neither
  budget runs out long before the other (a lower crop budget leaves tokens unused, a higher
  one leaves crops padded).

Everything is measured from the batches themselves, not from the plan: real tokens are those
whose ``input_ids`` are not -1, real crops those whose ``image_input_idx`` row is not all -1
(the collator's padded crops; ``image_masks`` cannot tell them, as Molmo v1 gives the global
view a mask of -1 too), *crops computed* the crops the
vision encoder runs on (rows x the crops axis). Rates count examples after the first quarter
(``benches.decode_stream.rate``); each layout runs ``--repeats`` times, in alternating order,
and keeps its best rate (other processes on the machine only slow a run down). Crops are uint8
(``normalize=False, exact=False``: the fast image part, so that the comparison is about the
layout) and float32 (Molmo's exact pixels). Results:
``benches/results/packing_stream.{json,md,png}``.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np

from benches import molmo_batches
from benches.common import ROOT
from benches.decode_stream import rate
from benches.molmo_batches import DATA, make_data

RESULTS = ROOT / "benches" / "results"
SEQ_LEN, MAX_CROPS = molmo_batches.SEQ_LEN, molmo_batches.MAX_CROPS
UNPACKED = "unpacked"
COMMAND = "python -m benches.packing_stream"


def batches(tok: Any, crops: str, pack: Any = None) -> Any:
    """`benches.molmo_batches`'s Batches (pixmo-points, pointing), packed with `pack`."""
    return molmo_batches.ours_batches(tok, crops, pack)


def crop_budget(tok: Any, path: Path, max_tokens: int) -> int:
    """The crop budget matching the data's mix at `max_tokens`: the token budget times the
    data's crops per token (Molmo's packing costs), rounded up to a multiple of 8."""
    import pixmo_stream as ps
    from pixmo_stream import molmo

    b = batches(tok, "uint8", ps.Packing(max_tokens, None, 1, costs=molmo.costs))
    tokens, crops = b.costs(ps.Dataset(str(path)))
    per_token = float(crops.sum(dtype=np.int64)) / float(tokens.sum(dtype=np.int64))
    return max(b.n_crops, 8 * math.ceil(max_tokens * per_token / 8))


def crop_sweep(tok: Any, path: Path, max_tokens: int, chosen: int) -> list[dict[str, Any]]:
    """Why the crop budget: the plan's rows at crop budgets around `chosen`, from the costs
    alone (no data read): token fill against crops computed per real crop."""
    import pixmo_stream as ps
    from pixmo_stream import _native, molmo

    b = batches(tok, "uint8", ps.Packing(max_tokens, None, 1, costs=molmo.costs))
    tokens, crops = b.costs(ps.Dataset(str(path)))
    out = []
    for c in sorted({max(b.n_crops, chosen + d) for d in (-48, -32, -16, 0, 16, 32)}):
        plan = _native.PackPlan(
            [len(tokens)], tokens, crops, seed=0, max_tokens=max_tokens, max_crops=c
        )
        rows = plan.num_rows
        out.append(
            {
                "max_crops": c,
                "rows": rows,
                "token_fill": float(tokens.sum(dtype=np.int64)) / (rows * max_tokens),
                "crops_per_real_crop": rows * c / float(crops.sum(dtype=np.int64)),
            }
        )
    return out


def loader(tok: Any, path: Path, crops: str, layout: dict[str, Any]) -> Any:
    import pixmo_stream as ps
    from pixmo_stream import molmo

    if layout["packed"]:
        pack = ps.Packing(
            layout["max_tokens"], layout["max_crops"], layout["rows_per_batch"], costs=molmo.costs
        )
        ds = batches(tok, crops, pack).stream(str(path), seed=0)
    else:
        ds = batches(tok, crops).stream(str(path), batch_size=layout["batch"], seed=0)
    return ps.DataLoader(ds, num_workers=0)


def batch_stats(batch: dict[str, Any]) -> dict[str, int]:
    """What one batch holds, from its small arrays (the crops themselves are not read)."""
    ids = batch["input_ids"].numpy()
    idx = batch["image_input_idx"].numpy()
    masks = batch["image_masks"].numpy()
    # A padded crop's image_input_idx is all -1 (what `normalize_images` goes by). Its
    # image_masks are all -1 too, but so are the global view's (Molmo v1 pads the global
    # view's mask with -1), so the masks cannot tell real crops from padding.
    real_crops = (idx != -1).any(axis=-1)
    if not (masks[~real_crops] == -1).all():
        raise AssertionError("a padded crop (image_input_idx all -1) has image_masks")
    real_rows = (ids != -1).any(axis=-1)
    if "seq_lens" in batch:  # packed: each row's examples' lengths, 0 after its last
        examples = int((batch["seq_lens"].numpy() > 0).sum())
    else:
        examples = int(real_rows.sum())
    return {
        "examples": examples,
        "rows": int(real_rows.sum()),
        "token_slots": int(ids.size),
        "real_tokens": int((ids != -1).sum()),
        "loss_tokens": int((batch["loss_masks"].numpy() > 0).sum()),
        "crop_slots": int(real_crops.size),
        "real_crops": int(real_crops.sum()),
        "steps": 1,
    }


def measure(tok: Any, path: Path, n: int, crops: str, layout: dict[str, Any]) -> dict[str, Any]:
    """One epoch of the layout: rates from `rate`'s timed part (after the first quarter of the
    examples), layout figures from all its batches."""
    seen: list[dict[str, int]] = []

    def count(batch: dict[str, Any]) -> int:
        seen.append(batch_stats(batch))
        return seen[-1]["examples"]

    r = rate(loader(tok, path, crops, layout), count, n)
    # The batch after which `rate` started its clock: the first to reach a quarter of `n`.
    cum = np.cumsum([s["examples"] for s in seen])
    start = int(np.searchsorted(cum, n // 4)) + 1
    timed = _sum(seen[start:])
    total = _sum(seen)
    per_s = r["images_per_s"]
    out = {"examples_per_s": per_s, "first_batch_s": r["first_batch_s"]}
    if timed["examples"]:  # per example in the timed part, times its examples/s
        for key in ("rows", "real_tokens", "token_slots", "loss_tokens", "steps"):
            out[f"{key}_per_s"] = per_s * timed[key] / timed["examples"]
    out.update(layout_figures(total))
    return out


def _sum(stats: list[dict[str, int]]) -> dict[str, int]:
    keys = stats[0].keys() if stats else ()
    return {k: sum(s[k] for s in stats) for k in keys}


def layout_figures(t: dict[str, int]) -> dict[str, Any]:
    fill = t["real_tokens"] / t["token_slots"]
    return {
        **t,
        "token_fill": fill,
        "padding_waste": 1 - fill,
        "crops_per_real_crop": t["crop_slots"] / t["real_crops"],
        "examples_per_row": t["examples"] / t["rows"],
        "examples_per_step": t["examples"] / t["steps"],
        "loss_tokens_per_step": t["loss_tokens"] / t["steps"],
        "real_tokens_per_step": t["real_tokens"] / t["steps"],
    }


def layouts(args: argparse.Namespace, tok: Any, path: Path) -> dict[str, dict[str, Any]]:
    out = {
        UNPACKED: {
            "packed": False,
            "batch": args.batch,
            "row_tokens": SEQ_LEN,
            "row_crops": MAX_CROPS + 1,
            "rows_per_step": args.batch,
        }
    }
    given = [int(c) for c in args.max_crops.split(",")] if args.max_crops else []
    for i, budget in enumerate(int(b) for b in args.budgets.split(",")):
        crops = given[i] if i < len(given) else crop_budget(tok, path, budget)
        rows = max(1, args.step_tokens // budget)
        out[f"packed {budget}"] = {
            "packed": True,
            "max_tokens": budget,
            "max_crops": crops,
            "rows_per_batch": rows,
            "row_tokens": budget,
            "row_crops": crops,
            "rows_per_step": rows,
        }
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--records", type=int, default=400)
    ap.add_argument("--preset", default="pixmo-cap")
    ap.add_argument("--batch", type=int, default=8, help="examples per unpacked step")
    ap.add_argument("--budgets", default="16384,8192", help="packed token budgets")
    ap.add_argument("--max-crops", default="", help="crop budgets (default: the data's mix)")
    ap.add_argument("--step-tokens", type=int, default=16384, help="packed tokens per step")
    ap.add_argument("--crops", default="uint8,float32", help="crop dtypes to run")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data", type=Path, default=DATA, help="where the data is cached")
    ap.add_argument("--no-write", action="store_true", help="print only, write no results")
    args = ap.parse_args(argv)

    import pixmo_stream as ps
    from benches import molmo_pipeline

    t = time.perf_counter()
    path = make_data(args.records, args.preset, args.seed, args.data)
    n = len(ps.Dataset(str(path)))
    print(f"data: {n} records ({time.perf_counter() - t:.0f} s)")
    tok = molmo_pipeline.tiny_bpe()
    lay = layouts(args, tok, path)
    out: dict[str, Any] = {"records": n, "preset": args.preset, "layouts": lay, "rows": {}}
    names = list(lay)
    first = lay[names[1]] if len(names) > 1 else None
    if first is not None:
        out["crop_sweep"] = {
            "max_tokens": first["max_tokens"],
            "chosen": first["max_crops"],
            "plans": crop_sweep(tok, path, first["max_tokens"], first["max_crops"]),
        }
    for crops in args.crops.split(","):
        best: dict[str, dict[str, Any]] = {}
        for rep in range(args.repeats):  # alternating order: no layout always runs first
            for name in names if rep % 2 == 0 else names[::-1]:
                r = measure(tok, path, n, crops, lay[name])
                if name not in best or r["examples_per_s"] > best[name]["examples_per_s"]:
                    best[name] = r
        for name in names:
            r = best[name]
            r["x_unpacked_examples_per_s"] = r["examples_per_s"] / best[UNPACKED]["examples_per_s"]
            out["rows"][f"{name}, {crops} crops"] = {"layout": name, "crops": crops, **r}
            print(f"{name}, {crops} crops: {r['examples_per_s']:.1f} examples/s")
    print(table(out))
    if not args.no_write:
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / "packing_stream.json").write_text(json.dumps(out, indent=2))
        (RESULTS / "packing_stream.md").write_text(table(out) + "\n")
        plot(out)
    return out


def describe(layout: dict[str, Any]) -> str:
    if layout["packed"]:
        return (
            f"{layout['rows_per_batch']} x {layout['max_tokens']} tokens, "
            f"{layout['max_crops']} crops"
        )
    return f"{layout['batch']} x {SEQ_LEN} tokens, {MAX_CROPS + 1} crops (Molmo v1)"


def table(out: dict[str, Any]) -> str:
    lines = [
        f"Packed against unpacked Molmo batches, {out['records']} {out['preset']} images "
        "(pixmo-points, pointing), one epoch through `pixmo_stream.DataLoader` (0 workers)",
        "",
        f"Command: `{COMMAND}`",
        "",
        "| layout (step) | crops | examples/s (x unpacked) | rows/s | real tokens/s "
        "| token fill | padding waste | loss tokens/step | crops computed per real crop "
        "| examples/row |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in out["rows"].values():
        lay = out["layouts"][r["layout"]]
        lines.append(
            f"| {r['layout']} ({describe(lay)}) | {r['crops']} "
            f"| {r['examples_per_s']:.1f} ({r['x_unpacked_examples_per_s']:.2f}x) "
            f"| {r.get('rows_per_s', 0):.1f} | {r.get('real_tokens_per_s', 0):,.0f} "
            f"| {100 * r['token_fill']:.1f} % | {100 * r['padding_waste']:.1f} % "
            f"| {r['loss_tokens_per_step']:,.0f} | {r['crops_per_real_crop']:.3f} "
            f"| {r['examples_per_row']:.2f} |"
        )
    lines += [
        "",
        "Real tokens: `input_ids != -1`; token fill: real tokens / (rows x row tokens); "
        "crops computed: rows x the crops axis (what the vision encoder runs), real crops: "
        "those whose `image_input_idx` is not all -1. Rates count examples after the first "
        "quarter, best of the repeats.",
    ]
    sweep = out.get("crop_sweep")
    if sweep:
        lines += [
            "",
            f"Crop budget at {sweep['max_tokens']} tokens, from the packing plan alone (the "
            f"costs, no data read); {sweep['chosen']} is the token budget times the data's "
            "crops per token, rounded up to a multiple of 8:",
            "",
            "| crop budget | rows | token fill | crops computed per real crop |",
            "|---:|---:|---:|---:|",
        ]
        for p in sweep["plans"]:
            mark = " (chosen)" if p["max_crops"] == sweep["chosen"] else ""
            lines.append(
                f"| {p['max_crops']}{mark} | {p['rows']} | {100 * p['token_fill']:.1f} % "
                f"| {p['crops_per_real_crop']:.3f} |"
            )
    return "\n".join(lines)


def plot(out: dict[str, Any]) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: no plot")
        return
    rows = list(out["rows"].values())
    names = list(out["layouts"])
    first = {r["layout"]: r for r in reversed(rows)}  # layout figures: the same for any crops
    x = np.arange(len(names))
    fig, axes = plt.subplots(1, 3, figsize=(13, 4))
    fill = [100 * first[k]["token_fill"] for k in names]
    axes[0].bar(x, fill, color="tab:green", label="real tokens")
    axes[0].bar(x, [100 - f for f in fill], bottom=fill, color="tab:red", label="padding")
    for i, f in enumerate(fill):
        axes[0].text(i, f / 2, f"{f:.1f} %", ha="center", color="white")
    axes[0].set_ylabel("% of token slots")
    axes[0].set_title("Token fill / padding waste")
    axes[0].legend(loc="lower right")
    per = [first[k]["crops_per_real_crop"] for k in names]
    axes[1].bar(x, per, color="tab:blue")
    for i, p in enumerate(per):
        axes[1].text(i, p, f"{p:.3f}", ha="center", va="bottom")
    axes[1].set_ylim(0, max(per) * 1.15)
    axes[1].set_ylabel("crops the ViT runs / real crops")
    axes[1].set_title("Crops computed per real crop")
    dtypes = list(dict.fromkeys(r["crops"] for r in rows))
    width = 0.8 / len(dtypes)
    for j, d in enumerate(dtypes):
        got = {r["layout"]: r for r in rows if r["crops"] == d}
        vals = [got[k].get("real_tokens_per_s", 0) / 1000 for k in names]
        axes[2].bar(x + (j - (len(dtypes) - 1) / 2) * width, vals, width, label=f"{d} crops")
    axes[2].set_ylabel("thousand real tokens/s")
    axes[2].set_title("Real tokens/s (0 workers)")
    axes[2].legend(loc="lower right")
    labels = [k.replace("packed ", "packed\n") + " tok" if k != UNPACKED else k for k in names]
    for ax in axes:
        ax.set_xticks(x, labels)
    fig.suptitle(
        f"Packed vs unpacked Molmo batches, {out['records']} {out['preset']} images, "
        "through pixmo_stream.DataLoader"
    )
    fig.tight_layout()
    fig.savefig(RESULTS / "packing_stream.png", dpi=110)


if __name__ == "__main__":
    main()
