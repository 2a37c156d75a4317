"""Side-by-side benchmark of pixmo-stream against the formats its users would otherwise pick.

    python -m benches.run --quick          # ~1-2 minutes, for development
    python -m benches.run                  # the full run (20,000 records), under 20 minutes

Every contender gets the same synthetic records (``pixmo_stream.synthetic``), in the same run,
on the same machine. Writing is timed in this process (the records are in memory); each
contender's reads run in a fresh child process (so that no library's caches, threads or shared
memory leak into another's figures, and peak memory is the reader's own). Results go to
``benches/results/latest.{json,md,png}`` (quick runs: ``benches/out/``, not committed);
``--report JSON`` redraws the table and plot from a saved run.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

# Nothing may reach the network at run time.
for _k in ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
    os.environ.setdefault(_k, "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("DO_NOT_TRACK", "1")

from benches import machine  # noqa: E402
from benches.common import (  # noqa: E402
    ROOT,
    NotSupported,
    PeakMemory,
    dir_bytes,
    evict,
    load_synthetic,
    repeat,
    stats,
    warm,
)
from benches.contenders import ALL, BY_NAME  # noqa: E402

RESULTS = ROOT / "benches" / "results"
QUICK_RESULTS = ROOT / "benches" / "out"  # ignored by git: quick runs are not the record


@dataclass
class Config:
    records: int = 20_000
    preset: str = "small"
    seed: int = 0
    repeats: int = 3
    write_repeats: int = 3  # the median of 3: one slow first write (page cache) does not decide
    random_reads: int = 1000
    loader_records: int = 4096
    decoded_records: int = 1024
    batch_size: int = 32
    loader_workers: tuple[int, ...] = (0, 2)
    cold: bool = True
    step_timeout: int = 240
    quick: bool = False


QUICK = {
    "records": 800,
    "repeats": 1,
    "write_repeats": 1,
    "random_reads": 200,
    "loader_records": 384,
    "decoded_records": 64,
    "step_timeout": 60,
    "quick": True,
}


# --- child: every read measurement of one contender ------------------------------------------


class _StepTimeout(Exception):
    pass


def _alarm(_sig: int, _frame: Any) -> None:
    raise _StepTimeout()


def _consume(records: Iterable[dict[str, Any]]) -> tuple[int, int]:
    n = nbytes = 0
    for rec in records:
        n += 1
        nbytes += len(rec["image"])
    return n, nbytes


def _consume_read(records: Iterable[dict[str, Any]]) -> tuple[int, int]:
    """As `_consume`, but takes each image's buffer: a lazily verified view hashes its pages."""
    n = nbytes = 0
    for rec in records:
        n += 1
        nbytes += memoryview(rec["image"]).nbytes
    return n, nbytes


def _loader_run(c: Any, path: Path, cfg: Config, workers: int, decode: bool, limit: int) -> dict:
    """Build the loader, take batches until ``limit`` records: first-batch latency and rate."""
    t0 = time.perf_counter()
    loader = c.loader(
        path, workers=workers, decode=decode, batch_size=cfg.batch_size, seed=cfg.seed
    )
    it = iter(loader)
    first = next(it)
    t_first = time.perf_counter() - t0
    n = len(first)
    for batch in it:
        n += len(batch)
        if n >= limit:
            break
    total = time.perf_counter() - t0
    del it, loader
    gc.collect()
    if n - len(first) >= 8 * cfg.batch_size and total > t_first:
        steady = (n - len(first)) / (total - t_first)
    else:  # too few batches after the first (workers may have made them all meanwhile)
        steady = n / total
    return {"first_batch_s": t_first, "total_s": total, "records": n, "steady_rec_per_s": steady}


def child_main(args: dict[str, Any]) -> None:
    cfg = Config(**{**args["config"], "loader_workers": tuple(args["config"]["loader_workers"])})
    c = BY_NAME[args["contender"]]
    path = Path(args["path"])
    out_file = Path(args["out"])
    n, total_image_bytes = args["records"], args["image_bytes"]
    res: dict[str, Any] = {}
    signal.signal(signal.SIGALRM, _alarm)

    def save() -> None:
        out_file.write_text(json.dumps(res))

    def step(name: str, fn: Callable[[], Any]) -> None:
        signal.alarm(cfg.step_timeout)
        try:
            res[name] = fn()
        except NotSupported as e:
            res[name] = {"na": str(e)}
        except _StepTimeout:
            res[name] = {"error": f"timed out after {cfg.step_timeout} s"}
        except Exception as e:  # a failing peer is a result, not a crash of the harness
            res[name] = {"error": f"{type(e).__name__}: {e}"[:500]}
            traceback.print_exc()
        finally:
            signal.alarm(0)
        save()

    def before() -> None:
        c.before_read(path)

    def warm_before() -> None:
        c.before_read(path)
        warm(path)

    c.missing()  # import the library outside the timed regions
    try:  # and torch, which some libraries only import when a loader is made
        import torch.utils.data  # noqa: F401
    except ImportError:
        pass
    warm(path)

    def pagecache() -> dict[str, Any]:
        nb = dir_bytes(path)
        t = repeat(lambda: warm(path), cfg.repeats)
        return {"seconds": stats(t), "bytes": nb, "gb_per_s": nb / min(t) / 1e9}

    step("pagecache_read", pagecache)

    def open_first() -> dict[str, Any]:
        first = {}

        def run() -> None:
            first["rec"] = c.open_first(path)

        t = repeat(run, cfg.repeats, before=warm_before)
        if first["rec"]["image_sha256"] != args["first_sha256"]:
            raise AssertionError("first record differs from what was written")
        return {"seconds": stats(t)}

    step("open_first", open_first)

    def scan() -> dict[str, Any]:
        got: list[tuple[int, int]] = []
        peak = 0

        def run() -> None:
            nonlocal peak
            with PeakMemory() as pm:
                got.append(_consume(c.scan(path)))
            peak = max(peak, pm.delta)

        t = repeat(run, cfg.repeats, before=warm_before)
        if got[-1] != (n, total_image_bytes):
            raise AssertionError(f"scan returned {got[-1]}, expected {(n, total_image_bytes)}")
        return {"seconds": stats(t), "rec_per_s": n / stats(t)["median"], "peak_mem": peak}

    step("scan", scan)

    def scan_read() -> dict[str, Any]:
        got: list[tuple[int, int]] = []
        t = repeat(lambda: got.append(_consume_read(c.scan(path))), cfg.repeats, before=warm_before)
        if got[-1] != (n, total_image_bytes):
            raise AssertionError(f"scan returned {got[-1]}, expected {(n, total_image_bytes)}")
        return {"seconds": stats(t), "rec_per_s": n / stats(t)["median"]}

    step("scan_read", scan_read)

    def captions() -> dict[str, Any]:
        got: list[int] = []
        t = repeat(
            lambda: got.append(sum(len(caps) > 0 for caps in c.scan_captions(path))),
            cfg.repeats,
            before=warm_before,
        )
        if got[-1] != n:
            raise AssertionError(f"captions scan returned {got[-1]} records, expected {n}")
        return {"seconds": stats(t), "rec_per_s": n / stats(t)["median"]}

    step("captions", captions)

    def random_access() -> dict[str, Any]:
        idx = random.Random(cfg.seed).sample(range(n), min(cfg.random_reads, n))
        got: list[Any] = []
        t = repeat(lambda: got.append(c.get_many(path, idx)), cfg.repeats, before=warm_before)
        recs = got[-1]
        want = args["sha_by_index"]
        for i, rec in zip(idx, recs, strict=True):
            if str(i) in want and rec["image_sha256"] != want[str(i)]:
                raise AssertionError(f"record {i} differs from what was written")
        return {
            "seconds": stats(t),
            "records": len(idx),
            "rec_per_s": len(idx) / stats(t)["median"],
        }

    step("random_access", random_access)

    for workers in cfg.loader_workers:
        for decode in (False, True):
            limit = cfg.decoded_records if decode else cfg.loader_records
            limit = min(limit, n)

            def loader(workers: int = workers, decode: bool = decode, limit: int = limit) -> dict:
                runs = []
                for _ in range(cfg.repeats):
                    # No before_read here: a loader stopped early may leave a library's
                    # background threads finishing their work (MDS decompressing a shard).
                    warm(path)
                    runs.append(_loader_run(c, path, cfg, workers, decode, limit))
                return {
                    "first_batch_s": stats([r["first_batch_s"] for r in runs]),
                    "steady_rec_per_s": stats([r["steady_rec_per_s"] for r in runs]),
                    "records": runs[-1]["records"],
                }

            step(f"loader_w{workers}_{'decoded' if decode else 'raw'}", loader)

    def loader_epoch() -> dict:
        # The first records of a shuffled epoch carry start-up costs that a whole epoch
        # amortises (opening shards, a store verifying or decompressing what it reads first);
        # a training run sees the whole-epoch rate.
        runs = []
        for _ in range(cfg.repeats):
            warm(path)
            runs.append(_loader_run(c, path, cfg, 0, False, n))
        return {
            "first_batch_s": stats([r["first_batch_s"] for r in runs]),
            "steady_rec_per_s": stats([r["steady_rec_per_s"] for r in runs]),
            "records": runs[-1]["records"],
        }

    if 0 in cfg.loader_workers:
        step("loader_w0_epoch", loader_epoch)

    if cfg.cold:
        method: dict[str, str] = {}

        def cold_before() -> None:
            gc.collect()  # readers still referenced would keep their files mapped
            c.before_read(path)
            method["m"] = evict(path)

        def cold_open() -> dict[str, Any]:
            t = repeat(lambda: c.open_first(path), cfg.repeats, before=cold_before)
            return {"seconds": stats(t), "method": method.get("m")}

        step("cold_open_first", cold_open)

        def cold_scan() -> dict[str, Any]:
            t = repeat(lambda: _consume(c.scan(path)), cfg.repeats, before=cold_before)
            return {
                "seconds": stats(t),
                "rec_per_s": n / stats(t)["median"],
                "method": method.get("m"),
            }

        step("cold_scan", cold_scan)
    save()


# --- parent ----------------------------------------------------------------------------------


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def measure_contender(
    c: Any, records: list[dict[str, Any]], cfg: Config, work: Path, meta: dict[str, Any]
) -> dict[str, Any]:
    res: dict[str, Any] = {"label": c.label, "ours": c.is_ours}
    why = c.missing()
    if why:
        res["na"] = why
        log(f"{c.name}: {why}")
        return res
    path = work / c.name
    # Untimed warm-up: first calls pay imports and lazy initialisation.
    scratch = work / f"{c.name}-warmup"
    try:
        c.write(records[:8], scratch)
    except Exception as e:
        res["write"] = {"error": f"{type(e).__name__}: {e}"[:500]}
        traceback.print_exc()
        return res
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    times, peak = [], 0
    try:
        for _ in range(cfg.write_repeats):
            shutil.rmtree(path, ignore_errors=True)
            gc.collect()
            # Every write starts with the disk idle: no writeback left from the last one
            # (or the last contender's) runs under the next.
            os.sync()
            with PeakMemory() as pm:
                t = time.perf_counter()
                c.write(records, path)
                times.append(time.perf_counter() - t)
            peak = max(peak, pm.delta)
    except Exception as e:
        res["write"] = {"error": f"{type(e).__name__}: {e}"[:500]}
        traceback.print_exc()
        shutil.rmtree(path, ignore_errors=True)
        return res
    size = dir_bytes(path)
    s = stats(times)
    res["write"] = {
        "seconds": s,
        "rec_per_s": len(records) / s["median"],
        "mb_per_s": meta["raw_bytes"] / s["median"] / 1e6,
        "peak_mem": peak,
    }
    res["size"] = {"bytes": size, "vs_raw": size / meta["raw_bytes"]}
    log(f"{c.name}: wrote {size / 1e6:,.1f} MB in {s['median']:.2f} s; reading in a child process")

    out_file = work / f"{c.name}.json"
    args_file = work / f"{c.name}-args.json"
    child_args = {
        "contender": c.name,
        "path": str(path),
        "out": str(out_file),
        "records": len(records),
        "image_bytes": meta["image_bytes"],
        "first_sha256": records[0]["image_sha256"],
        "sha_by_index": {str(i): records[i]["image_sha256"] for i in range(0, len(records), 7)},
        "config": asdict(cfg),
    }
    args_file.write_text(json.dumps(child_args))
    budget = cfg.step_timeout * 14
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "benches.run", "--child", str(args_file)],
            cwd=ROOT,
            timeout=budget,
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0:
            res["child_error"] = proc.stderr[-2000:]
            log(f"{c.name}: reader process exited {proc.returncode}")
        elif proc.stderr.strip():
            res["child_stderr"] = proc.stderr[-2000:]
    except subprocess.TimeoutExpired:
        res["child_error"] = f"reader process timed out after {budget} s"
    if out_file.exists():
        res.update(json.loads(out_file.read_text()))
    for k, v in res.items():
        if isinstance(v, dict) and "error" in v:
            log(f"{c.name}: {k}: {v['error'][:200]}")
    return res


def run(cfg: Config, only: list[str] | None, workdir: Path | None, keep: bool, out: Path) -> dict:
    started = time.time()
    info = machine.describe()
    log(f"machine: {info['cpu']}, {info['cores']} cores, {info['memory_gib']} GiB")
    synthetic = load_synthetic()
    t = time.perf_counter()
    records = list(
        synthetic.generate_records(cfg.records, seed=cfg.seed, preset=cfg.preset, workers=0)
    )
    gen_s = time.perf_counter() - t
    image_bytes = sum(len(r["image"]) for r in records)
    caption_bytes = sum(len(c.encode()) for r in records for c in r["captions"])
    meta = {
        "records": len(records),
        "preset": cfg.preset,
        "seed": cfg.seed,
        "image_bytes": image_bytes,
        "mean_image_kb": image_bytes / len(records) / 1e3,
        "caption_bytes": caption_bytes,
        # the bytes a writer is handed: images plus the text of every annotation
        "raw_bytes": image_bytes
        + caption_bytes
        + sum(
            len(json.dumps({"q": r["qa"], "l": r["point_labels"], "m": r["meta"]}))
            + r["points"].nbytes
            for r in records
        ),
        "generate_seconds": gen_s,
    }
    log(
        f"generated {len(records):,} records ({cfg.preset}, {image_bytes / 1e6:,.0f} MB of JPEG, "
        f"mean {meta['mean_image_kb']:.0f} KB) in {gen_s:.1f} s"
    )
    sample = [r["image"] for r in records[: min(200, len(records))]]
    limits = {
        "memcpy": machine.memcpy(cfg.repeats),
        "jpeg_decode": machine.jpeg_decode(sample, cfg.repeats),
    }
    log(
        f"memcpy {limits['memcpy']['gb_per_s']:.1f} GB/s; PIL decode "
        f"{limits['jpeg_decode']['pil']['images_per_s']:.0f} img/s"
    )

    tmp_parent = workdir or Path(tempfile.gettempdir())
    tmp_parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="pixmo-bench-", dir=tmp_parent))
    limits["file_write"] = machine.file_write(
        [r["image"] for r in records], work, max(cfg.write_repeats, 2)
    )
    log(f"file write of the images {limits['file_write']['gb_per_s']:.2f} GB/s")
    contenders = [c for c in ALL if not only or c.name in only]
    results: dict[str, Any] = {}
    try:
        for c in contenders:
            t = time.perf_counter()
            results[c.name] = measure_contender(c, records, cfg, work, meta)
            log(f"{c.name}: done in {time.perf_counter() - t:.0f} s")
            if not keep:
                shutil.rmtree(work / c.name, ignore_errors=True)
    finally:
        if not keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            log(f"datasets kept in {work}")

    # The machine's page-cache read of "the same bytes": pixmo-stream's files when measured.
    for name in ["pixmo-stream", *results]:
        pc = results.get(name, {}).get("pagecache_read", {})
        if "gb_per_s" in pc:
            limits["pagecache_read"] = {"of": name, **pc}
            break
    cold_methods = {
        r.get(k, {}).get("method")
        for r in results.values()
        for k in ("cold_scan", "cold_open_first")
    } - {None}
    limits["cold_cache"] = ", ".join(sorted(cold_methods)) if cold_methods else "n/a"

    doc = {
        "command": " ".join(["python -m benches.run", *sys.argv[1:]]),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "wall_seconds": time.time() - started,
        "machine": info,
        "config": asdict(cfg),
        "data": meta,
        "limits": limits,
        "contenders": results,
    }
    from benches import report

    out.mkdir(parents=True, exist_ok=True)
    (out / "latest.json").write_text(json.dumps(doc, indent=1))
    (out / "latest.md").write_text(report.markdown(doc))
    try:
        report.plot(doc, out / "latest.png")
    except ImportError as e:
        log(f"no plot: {e}")
    log(f"wrote {out}/latest.json, latest.md, latest.png in {doc['wall_seconds']:.0f} s")
    return doc


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benches.run", description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="small run for development (< 2 min)")
    p.add_argument("--records", type=int, help="records to generate (default 20000; quick 800)")
    p.add_argument("--preset", default="small", help="synthetic preset: small or pixmo-cap")
    p.add_argument("--repeats", type=int, help="repeats of each read measurement")
    p.add_argument("--write-repeats", type=int, help="repeats of each conversion")
    p.add_argument("--only", help="comma-separated contenders (default all): " + ", ".join(BY_NAME))
    p.add_argument("--loader-workers", default="0,2", help="DataLoader worker counts (default 0,2)")
    p.add_argument("--no-cold", action="store_true", help="skip the cold page-cache runs")
    p.add_argument("--workdir", type=Path, help="where datasets are written (default: $TMPDIR)")
    p.add_argument("--keep", action="store_true", help="keep the written datasets")
    p.add_argument(
        "--out",
        type=Path,
        help="results folder (default benches/results; --quick: benches/out, not committed)",
    )
    p.add_argument(
        "--report", type=Path, help="only redraw latest.md and latest.png from this JSON"
    )
    p.add_argument("--child", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def config_from(ns: argparse.Namespace) -> Config:
    kw: dict[str, Any] = dict(QUICK) if ns.quick else {}
    for k in ("records", "repeats", "write_repeats"):
        if getattr(ns, k) is not None:
            kw[k] = getattr(ns, k)
    kw["preset"] = ns.preset
    kw["loader_workers"] = tuple(int(w) for w in ns.loader_workers.split(","))
    kw["cold"] = not ns.no_cold
    return Config(**kw)


def main(argv: list[str] | None = None) -> int:
    ns = parse(argv)
    if ns.child:
        child_main(json.loads(Path(ns.child).read_text()))
        return 0
    if ns.out is None:
        ns.out = QUICK_RESULTS if ns.quick else RESULTS
    if ns.report:
        doc = json.loads(ns.report.read_text())
        from benches import report

        ns.out.mkdir(parents=True, exist_ok=True)
        (ns.out / "latest.md").write_text(report.markdown(doc))
        report.plot(doc, ns.out / "latest.png")
        return 0
    only = ns.only.split(",") if ns.only else None
    if only:
        unknown = set(only) - set(BY_NAME)
        if unknown:
            print(f"unknown contender(s): {', '.join(sorted(unknown))}", file=sys.stderr)
            return 2
    run(config_from(ns), only, ns.workdir, ns.keep, ns.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
