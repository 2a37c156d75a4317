"""Streaming from an object store, side by side: pixmo-stream, MosaicML Streaming (MDS) and
LitData reading the same records from the same local S3 server.

    python -m benches.object_store                  # ~4,000 records (~0.6 GB of JPEG)
    python -m benches.object_store --quick          # ~600 records, for development
    python -m benches.object_store --records 40 --latency 0.005   # the smoke test's size
    python -m benches.object_store --served 300,1200,4000   # bytes served by dataset size

The same synthetic records (``pixmo_stream.synthetic``) are written as pixmo-stream, MDS and
LitData into one bucket of ``tests/s3_server/`` (prefixes ``pxs``, ``mds``, ``litdata``),
which runs in its own process and adds ``--latency`` seconds to every request, standing in for
a real object store. Each measurement runs in a fresh child process, with an empty cache:

- **cold**: one shuffled epoch, images undecoded, through the DataLoader each library documents
  (``StreamingDataLoader`` for MDS and LitData, ``pixmo_stream.DataLoader`` for us), with
  ``--workers`` workers: records/s over the epoch and the time to the first batch;
- **warm** (pixmo-stream): a second epoch over the cache the cold one filled;
- **local** (pixmo-stream): the same files read from local disk, no server;
- **captions scan**: every record's captions, no images, from the bucket: bytes the server sent
  as a share of the dataset's bytes (pixmo-stream reads one column; MDS and LitData samples
  are whole, so they fetch whole shards).

Prints one table and writes ``benches/results/object_store.{json,md}`` (``--quick`` and small
runs: ``benches/out/``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.request
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

# Nothing may reach the network; no cloud metadata service either.
os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")
os.environ.setdefault("DO_NOT_TRACK", "1")

from benches.common import ROOT, collate_list, dir_bytes, load_synthetic  # noqa: E402

RESULTS = ROOT / "benches" / "results"
QUICK_RESULTS = ROOT / "benches" / "out"
DATA = ROOT / "benches" / "out" / "object_store"
BUCKET = "bench"
PREFIX = {"pixmo-stream": "pxs", "mds": "mds", "litdata": "litdata"}
CONTENDERS = ("pixmo-stream", "mds", "litdata", "litdata-boto3")
LABEL = {
    "pixmo-stream": "pixmo-stream",
    "mds": "MDS (MosaicML)",
    "litdata": "LitData",
    "litdata-boto3": "LitData, boto3",
}
PHASES = {
    "pixmo-stream": ["cold", "warm", "local", "captions"],
    "mds": ["cold", "captions"],
    "litdata": ["cold", "captions"],
    "litdata-boto3": ["cold"],  # LitData without obstore: what it falls back to
}
NOT_YET = "not supported yet"
GOALS = {
    "cold vs MDS": 3.0,
    "cold vs LitData": 3.0,
    "warm vs local": 0.8,
    "captions bytes share": 0.02,
    "first batch s": 1.0,
}


# ---- data ----------------------------------------------------------------------------------
def make_data(n: int, preset: str, seed: int) -> tuple[Path, dict[str, Any]]:
    """The records written in each format under ``root/bench/<prefix>`` (kept between runs;
    pixmo-stream is written as soon as it can be, even into data made before it could)."""
    root = DATA / f"{preset}-{n}-{seed}"
    bucket = root / BUCKET
    manifest = root / "manifest.json"
    info: dict[str, Any] = json.loads(manifest.read_text()) if manifest.exists() else {}
    todo = [c for c in PREFIX if c not in info.get("written", {})]
    if todo and info:
        todo = [c for c in todo if _can_write(c)]
    if not todo:
        return root, info
    synthetic = load_synthetic()
    t = time.perf_counter()
    records = list(synthetic.generate_records(n, seed, preset, workers=min(2, os.cpu_count() or 1)))
    print(f"data: {n} records generated in {time.perf_counter() - t:.0f} s", flush=True)
    info.setdefault("written", {})
    info["records"] = n
    info["image_bytes"] = sum(len(r["image"]) for r in records)
    info["caption_bytes"] = sum(len(c.encode()) for r in records for c in r["captions"])
    for name in todo:
        out = bucket / PREFIX[name]
        shutil.rmtree(out, ignore_errors=True)
        t = time.perf_counter()
        try:
            _writer(name)(records, out)
        except Exception as e:  # ours mid-rebuild, a peer missing: the rest still run
            print(f"data: {name} not written ({type(e).__name__}: {e})", flush=True)
            info.setdefault("not_written", {})[name] = f"{type(e).__name__}: {e}"[:300]
            shutil.rmtree(out, ignore_errors=True)
            continue
        info.get("not_written", {}).pop(name, None)
        info["written"][name] = {"bytes": dir_bytes(out), "files": len(list(out.rglob("*")))}
        print(f"data: {name} written in {time.perf_counter() - t:.0f} s", flush=True)
    manifest.write_text(json.dumps(info, indent=1))
    return root, info


def _format(contender: str) -> str:
    """The data a contender reads (LitData's two download paths read the same chunks)."""
    return "litdata" if contender.startswith("litdata") else contender


def _can_write(name: str) -> bool:
    if not name.startswith("pixmo-stream"):
        return True
    try:
        import pixmo_stream  # noqa: F401
    except ImportError:
        return False
    return True


def _writer(name: str) -> Callable[[list[dict[str, Any]], Path], None]:
    from benches.contenders.lit import LitDataContender
    from benches.contenders.mds import MDSContender
    from benches.contenders.pixmo import PixmoContender

    return {"pixmo-stream": PixmoContender, "mds": MDSContender, "litdata": LitDataContender}[
        name
    ]().write


# ---- what a child process measures -----------------------------------------------------------
class _NotYet(Exception):
    pass


def _admin(endpoint: str, what: str, method: str = "GET") -> dict[str, Any]:
    req = urllib.request.Request(f"{endpoint}/_admin/{what}", data=b"{}", method=method)
    if method == "GET":
        req = urllib.request.Request(f"{endpoint}/_admin/{what}")
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read())  # type: ignore[no-any-return]


def _storage_options(endpoint: str) -> dict[str, str]:
    from tests.s3_server import storage_options

    return storage_options(endpoint)


def _pixmo_loader(a: dict[str, Any], source: str, remote: bool) -> Any:
    import pixmo_stream as ps

    kw: dict[str, Any] = {"shuffle": True, "seed": a["seed"], "batch_size": a["batch_size"]}
    kw["collate_fn"] = collate_list
    if remote:
        kw.update(storage_options=_storage_options(a["endpoint"]), cache=a["cache"])
    try:
        ds = ps.StreamingDataset(source, **kw)
    except (TypeError, FileNotFoundError) as e:  # no object-store support in this build
        raise _NotYet(f"{type(e).__name__}: {e}") from e
    return ps.DataLoader(ds, batch_size=None, num_workers=a["workers"])


def _mds_dataset(a: dict[str, Any], shuffle: bool) -> Any:
    from streaming import StreamingDataset
    from streaming.base.util import clean_stale_shared_memory

    from benches.contenders.mds import _to_record

    clean_stale_shared_memory()

    class Records(StreamingDataset):
        def get_item(self, idx: int) -> Any:
            return _to_record(super().get_item(idx))

    ds = Records(
        remote=f"s3://{BUCKET}/{PREFIX['mds']}",
        local=a["cache"],
        shuffle=shuffle,
        shuffle_seed=a["seed"],
        batch_size=a["batch_size"],
    )
    # MDS fetched index.json here with a boto3 client that DataLoader workers then inherit
    # by fork, keep-alive socket and all: two workers talking over one connection read each
    # other's responses (a shard's GET carries another's If-Match; a shard ends up with
    # another's bytes). Dropping the client (MDS's own clean-up) gives each worker its own.
    for stream in ds.streams:
        stream._downloader.clean_up()
    return ds


def _litdata_dataset(a: dict[str, Any], shuffle: bool, transform: Any) -> Any:
    import litdata
    from litdata.streaming import downloader

    if a["contender"] == "litdata-boto3":
        downloader._OBSTORE_AVAILABLE = False  # its fallback: boto3 ``download_file``
    else:
        # LitData gets chunks with obstore, whose client options it sets itself: without
        # ``allow_http`` among them, obstore refuses an http:// endpoint (its AWS_ALLOW_HTTP
        # variable is overridden), so a plain-http S3 (MinIO, this server) needs it added.
        downloader._OBSTORE_CLIENT_OPTIONS = {
            **downloader._OBSTORE_CLIENT_OPTIONS,
            "allow_http": True,
        }

    return litdata.StreamingDataset(
        f"s3://{BUCKET}/{PREFIX['litdata']}",
        cache_dir=a["cache"],
        shuffle=shuffle,
        seed=a["seed"],
        transform=transform,
        storage_options={
            "endpoint_url": a["endpoint"],
            "aws_access_key_id": "test",
            "aws_secret_access_key": "test",
            "region_name": "us-east-1",
        },
    )


def _loader(a: dict[str, Any], contender: str, phase: str) -> Any:
    if contender.startswith("pixmo-stream"):
        if phase == "local":
            return _pixmo_loader(a, a["local"], remote=False)
        return _pixmo_loader(a, f"s3://{BUCKET}/{PREFIX[contender]}", remote=True)
    if contender == "mds":
        from streaming import StreamingDataLoader

        return StreamingDataLoader(
            _mds_dataset(a, shuffle=True),
            batch_size=a["batch_size"],
            num_workers=a["workers"],
            collate_fn=collate_list,
        )
    import litdata

    from benches.contenders.lit import _to_record

    return litdata.StreamingDataLoader(
        _litdata_dataset(a, shuffle=True, transform=_to_record),
        batch_size=a["batch_size"],
        num_workers=a["workers"],
        collate_fn=collate_list,
    )


def _epoch(make: Callable[[], Iterable[list[dict[str, Any]]]]) -> dict[str, Any]:
    """One epoch: time to the first batch (from building the loader on), records/s overall."""
    t0 = time.perf_counter()
    it = iter(make())
    first = next(it)
    t_first = time.perf_counter() - t0
    n, nbytes, shas = 0, 0, set()

    def take(batch: list[dict[str, Any]]) -> None:
        nonlocal n, nbytes
        for rec in batch:
            n += 1
            nbytes += memoryview(rec["image"]).nbytes
            shas.add(rec["image_sha256"])

    take(first)
    for batch in it:
        take(batch)
    total = time.perf_counter() - t0
    return {
        "first_batch_s": t_first,
        "seconds": total,
        "records": n,
        "distinct": len(shas),
        "image_bytes": nbytes,
        "rec_per_s": n / total,
    }


def _captions(a: dict[str, Any], contender: str) -> dict[str, Any]:
    t0 = time.perf_counter()
    if contender == "pixmo-stream":
        import pixmo_stream as ps

        try:
            ds = ps.Dataset(
                f"s3://{BUCKET}/{PREFIX['pixmo-stream']}",
                storage_options=_storage_options(a["endpoint"]),
                cache=False,
            )
        except (TypeError, FileNotFoundError) as e:
            raise _NotYet(f"{type(e).__name__}: {e}") from e
        scan = getattr(ds, "iter_rows", None) or ds.iter
        caps = (r["captions"] for r in scan(columns=["captions"]))
    elif contender == "mds":
        caps = (s["captions"] for s in _mds_dataset(a, shuffle=False))
    else:
        caps = (json.loads(s["ann"])["captions"] for s in _litdata_dataset(a, False, None))
    n = chars = 0
    for c in caps:
        n += 1
        chars += sum(map(len, c))
    total = time.perf_counter() - t0
    return {"seconds": total, "records": n, "caption_chars": chars, "rec_per_s": n / total}


def child_main(a: dict[str, Any]) -> None:
    """Run the phases of one contender; print one JSON line per phase."""
    endpoint = a["endpoint"]
    failed: set[str] = set()
    # Imports are not part of any measurement (torch's alone takes ~1 s here): whoever ran
    # first in a process would pay them in its time to the first batch.
    import torch  # noqa: F401

    if a["contender"].startswith("pixmo-stream"):
        import pixmo_stream.loader  # noqa: F401
        import pixmo_stream.streaming  # noqa: F401
    elif a["contender"] == "mds":
        import streaming  # noqa: F401
    else:
        import litdata  # noqa: F401
    for phase in a["phases"]:
        if phase == "warm" and "cold" in failed:
            continue  # a second epoch over a cache the first could not fill
        # The warm epoch reuses the cold one's cache; the captions scan starts from empty.
        spec = {
            **a,
            "cache": os.path.join(a["cache"], "captions" if phase == "captions" else "epoch"),
        }
        _admin(endpoint, "reset", "POST")
        try:
            if phase == "captions":
                res = _captions(spec, a["contender"])
            else:
                res = _epoch(lambda s=spec, p=phase: _loader(s, a["contender"], p))
        except _NotYet as e:
            res = {"na": f"{NOT_YET} ({e})"[:300]}
        except Exception as e:
            traceback.print_exc()
            res = {"error": _short(e)}
        if "na" in res or "error" in res:
            failed.add(phase)
        s = _admin(endpoint, "stats?log=1")
        res["server"] = {k: s[k] for k in ("requests", "bytes_sent", "ops", "statuses")}
        res["server"]["pattern"] = _pattern(s["log"])
        print("RESULT " + json.dumps({"phase": phase, **res}), flush=True)


def _pattern(log: list[dict[str, Any]]) -> dict[str, Any]:
    """How a reader asked for its bytes: whole objects or ranges, and how large."""
    gets = [e for e in log if e["op"] == "GetObject" and e.get("status") in (200, 206)]
    sizes = sorted(e.get("bytes", 0) for e in gets)
    return {
        "gets": len(gets),
        "ranged_gets": sum(1 for e in gets if "range" in e),
        "objects": len({e["key"] for e in gets}),
        "median_get_bytes": sizes[len(sizes) // 2] if sizes else 0,
        "max_get_bytes": sizes[-1] if sizes else 0,
    }


def _short(e: BaseException) -> str:
    """An error on one line: its type and first line, and the last line that names an error
    (a DataLoader worker's error arrives wrapped in its whole traceback)."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    first = f"{type(e).__name__}: {lines[0] if lines else ''}"
    cause = next((ln for ln in reversed(lines[1:]) if "Error" in ln), "")
    return (first + (f" ... {cause}" if cause else ""))[:400]


# ---- bytes served, by dataset size (pixmo-stream only) -----------------------------------------
def served(sizes: list[int], args: argparse.Namespace) -> list[str]:
    """What a cold epoch with the node cache on and a captions-only scan cost in bytes served,
    as a multiple (share) of the dataset's bytes, for datasets of `sizes` records: the sparse
    reads of the batches that come before their chunks are cached add to the whole chunks."""
    import pixmo_stream as ps

    sys.path.insert(0, str(ROOT / "tests"))
    from s3_server import S3ServerProcess

    synthetic = load_synthetic()
    lines = [
        f"{'records':>8} {'MB':>7} {'workers':>7} {'cold epoch x data':>17} {'captions %':>10}"
    ]
    with tempfile.TemporaryDirectory(prefix="served-", dir=DATA) as tmp:
        root = Path(tmp)
        with S3ServerProcess(root, latency=args.latency) as server:
            opts = _storage_options(server.endpoint)
            for n in sizes:
                local = root / BUCKET / f"served-{n}"
                with ps.Writer(str(local), synthetic.pixmo_schema()) as w:
                    w.write_many(synthetic.make_record(i) for i in range(n))
                size = dir_bytes(local)
                url = f"s3://{BUCKET}/served-{n}"
                server.reset()
                ds = ps.Dataset(url, storage_options=opts, cache=False)
                sum(1 for _ in ds.iter(columns=["captions"]))
                captions = server.stats()["bytes_sent"] / size
                for workers in (0, args.workers):
                    server.reset()
                    cache = tempfile.mkdtemp(prefix="cache-", dir=root)
                    sds = ps.StreamingDataset(
                        url,
                        storage_options=opts,
                        cache=cache,
                        seed=args.seed,
                        batch_size=args.batch_size,
                        collate_fn=collate_list,
                    )
                    loader = ps.DataLoader(sds, batch_size=None, num_workers=workers)
                    assert sum(len(b) for b in loader) == n
                    x = server.stats()["bytes_sent"] / size
                    lines.append(f"{n:>8} {size / 1e6:>7.1f} {workers:>7} {x:>17.2f} "
                                 f"{100 * captions:>10.2f}")  # fmt: skip
                    print(lines[-1], flush=True)
                    shutil.rmtree(cache, ignore_errors=True)
    return lines


# ---- the parent ------------------------------------------------------------------------------
def run_child(
    contender: str, phases: list[str], args: argparse.Namespace, endpoint: str, local: Path
) -> dict[str, dict[str, Any]]:
    cache = Path(tempfile.mkdtemp(prefix=f"{contender}-cache-", dir=DATA))
    spec = {
        "contender": contender,
        "phases": phases,
        "endpoint": endpoint,
        "cache": str(cache),
        "local": str(local),
        "workers": args.workers,
        "batch_size": args.batch_size,
        "seed": args.seed,
    }
    env = dict(os.environ)
    env.update(
        # boto3 (MDS, LitData's index): where the bucket is and any credentials (unchecked).
        S3_ENDPOINT_URL=endpoint,  # MDS's S3 downloader reads this one
        AWS_ACCESS_KEY_ID="test",
        AWS_SECRET_ACCESS_KEY="test",
        AWS_DEFAULT_REGION="us-east-1",
        # LitData fetches chunks with obstore, which refuses http:// endpoints unless told.
        AWS_ALLOW_HTTP="true",
    )
    out: dict[str, dict[str, Any]] = {}
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "benches.object_store", "--child", json.dumps(spec)],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=args.timeout,
        )
        stdout, stderr, rc = proc.stdout, proc.stderr, proc.returncode
    except subprocess.TimeoutExpired as e:
        stdout = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
        stderr, rc = f"timed out after {args.timeout} s", -1
    for line in stdout.splitlines():
        if line.startswith("RESULT "):
            doc = json.loads(line[len("RESULT ") :])
            out[doc.pop("phase")] = doc
    for phase in phases:
        if phase not in out and not (phase == "warm" and "rec_per_s" not in out.get("cold", {})):
            out[phase] = {"error": f"child exited {rc}: {stderr.strip()[-500:]}"}
    shutil.rmtree(cache, ignore_errors=True)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--records", type=int, default=None, help="default 4000 (--quick: 600)")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--latency", type=float, default=0.02, help="seconds added to each request")
    ap.add_argument("--workers", type=int, default=2, help="DataLoader workers")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--preset", default="small")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--timeout", type=int, default=900, help="seconds per contender")
    ap.add_argument("--only", default="", help="comma-separated, of " + ",".join(CONTENDERS))
    ap.add_argument("--out", type=Path, default=None, help="folder for object_store.json/.md")
    ap.add_argument("--fresh", action="store_true", help="rewrite the data (kept otherwise)")
    ap.add_argument(
        "--served",
        default="",
        metavar="N,N,...",
        help="only measure bytes served (cold epoch, captions scan) at these dataset sizes",
    )
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        child_main(json.loads(args.child))
        return 0
    if args.served:
        DATA.mkdir(parents=True, exist_ok=True)
        lines = served([int(x) for x in args.served.split(",")], args)
        print("\n".join(lines))
        return 0
    n = args.records or (600 if args.quick else 4000)
    out_dir = args.out or (QUICK_RESULTS if args.quick or n < 4000 else RESULTS)
    only = [c for c in args.only.split(",") if c] or list(CONTENDERS)
    unknown = set(only) - set(CONTENDERS)
    if unknown:
        ap.error(f"unknown contender(s) {sorted(unknown)}; choose from {CONTENDERS}")
    DATA.mkdir(parents=True, exist_ok=True)
    if args.fresh:
        shutil.rmtree(DATA / f"{args.preset}-{n}-{args.seed}", ignore_errors=True)
    root, info = make_data(n, args.preset, args.seed)
    sys.path.insert(0, str(ROOT / "tests"))
    from s3_server import S3ServerProcess

    rows: dict[str, dict[str, dict[str, Any]]] = {}
    started = time.time()
    with S3ServerProcess(root, latency=args.latency) as server:
        print(f"server: {server.endpoint}, {args.latency * 1000:g} ms per request", flush=True)
        for c in only:
            fmt = _format(c)
            if fmt not in info["written"]:
                why = info.get("not_written", {}).get(fmt, "")
                rows[c] = {"cold": {"na": f"{NOT_YET} (could not write the data: {why})"}}
                continue
            phases = PHASES[c]
            t = time.perf_counter()
            rows[c] = run_child(c, phases, args, server.endpoint, root / BUCKET / PREFIX[fmt])
            print(f"{c}: done in {time.perf_counter() - t:.0f} s", flush=True)
    doc = {
        "command": " ".join(["python -m benches.object_store", *(argv or sys.argv[1:])]),
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "wall_seconds": time.time() - started,
        "config": {
            "records": n,
            "preset": args.preset,
            "latency_s": args.latency,
            "workers": args.workers,
            "batch_size": args.batch_size,
            "seed": args.seed,
        },
        "data": info,
        "versions": _versions(),
        "rows": rows,
    }
    doc["ratios"] = ratios(doc)
    lines = table(doc)
    print("\n".join(lines))
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "object_store.json").write_text(json.dumps(doc, indent=1))
    (out_dir / "object_store.md").write_text(
        f"# Streaming from an object store\n\n`{doc['command']}` — {doc['date']}\n\n```\n"
        + "\n".join(lines)
        + "\n```\n"
    )
    print(f"wrote {out_dir}/object_store.json, object_store.md")
    return 0


def _versions() -> dict[str, str | None]:
    from importlib import metadata

    out: dict[str, str | None] = {}
    for p in ("pixmo-stream", "mosaicml-streaming", "litdata", "boto3", "obstore", "torch"):
        try:
            out[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            out[p] = None
    return out


def _rate(doc: dict[str, Any], contender: str, phase: str) -> float | None:
    v = doc["rows"].get(contender, {}).get(phase, {}).get("rec_per_s")
    return float(v) if v else None


def ratios(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The goals, each with its value (None when a side has no figure) and whether it holds."""
    out: dict[str, dict[str, Any]] = {}

    def put(name: str, value: float | None, higher_is_better: bool = True) -> None:
        goal = GOALS[name]
        holds = None if value is None else (value >= goal if higher_is_better else value < goal)
        out[name] = {"value": value, "goal": goal, "holds": holds}

    ours = _rate(doc, "pixmo-stream", "cold")
    for peer, label in (("mds", "MDS"), ("litdata", "LitData")):
        theirs = _rate(doc, peer, "cold")
        put(f"cold vs {label}", ours / theirs if ours and theirs else None)
    warm, local = _rate(doc, "pixmo-stream", "warm"), _rate(doc, "pixmo-stream", "local")
    put("warm vs local", warm / local if warm and local else None)
    cap = doc["rows"].get("pixmo-stream", {}).get("captions", {})
    size = doc["data"]["written"].get("pixmo-stream", {}).get("bytes")
    share = cap["server"]["bytes_sent"] / size if "records" in cap and size else None
    put("captions bytes share", share, higher_is_better=False)
    first = doc["rows"].get("pixmo-stream", {}).get("cold", {}).get("first_batch_s")
    put("first batch s", first, higher_is_better=False)
    return out


def table(doc: dict[str, Any]) -> list[str]:
    c, d = doc["config"], doc["data"]
    lines = [
        f"{c['records']:,} records ({c['preset']}, {d['image_bytes'] / 1e6:,.0f} MB of JPEG), "
        f"{c['latency_s'] * 1000:g} ms per request, {c['workers']} DataLoader workers, batches "
        f"of {c['batch_size']}, shuffled, images undecoded, empty cache each cold run",
        f"{'contender':<20} {'run':<9} {'records':>8} {'wall s':>8} {'rec/s':>8} "
        f"{'1st batch s':>11} {'MB served':>10} {'x data':>7} {'requests':>9}  note",
    ]
    for name, phases in doc["rows"].items():
        size = d["written"].get(_format(name), {}).get("bytes")
        for phase, r in phases.items():
            head = f"{LABEL[name]:<20} {phase:<9}"
            if "na" in r or "error" in r:
                why = r.get("na") or "failed: " + r["error"]
                lines.append(f"{head} {'-':>8}{' ' * 60}  {why}"[:220])
                continue
            served = r["server"]["bytes_sent"]
            note = ""
            if phase == "captions":
                note = "captions only"
            elif r["distinct"] != d["records"]:
                note = f"{r['distinct']} distinct of {d['records']}"
            first = f"{r['first_batch_s']:.2f}" if "first_batch_s" in r else ""
            share = f"{served / size:.3f}" if size else ""
            lines.append(
                f"{head} {r['records']:>8,} {r['seconds']:>8.2f} {r['rec_per_s']:>8,.0f} "
                f"{first:>11} {served / 1e6:>10,.1f} {share:>7} {r['server']['requests']:>9,}"
                f"  {note}"
            )
    lines.append("")
    for name, g in doc["ratios"].items():
        v = g["value"]
        sign = "<" if name.startswith(("captions bytes share", "first batch s")) else ">="
        shown = "n/a" if v is None else f"{v:.3f}" if v < 0.1 else f"{v:.2f}"
        verdict = "n/a" if g["holds"] is None else ("yes" if g["holds"] else "NO")
        lines.append(f"{name:<28} {shown:>8}   goal {sign} {g['goal']:g}: {verdict}")
    return lines


if __name__ == "__main__":
    raise SystemExit(main())
