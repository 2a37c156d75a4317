"""Image download throughput and robustness: pixmo-stream fetch against img2dataset.

    python -m benches.fetch                      # 4,000 URLs per scenario
    python -m benches.fetch --urls 1000          # quicker
    IMG2DATASET_PYTHON=/path/to/python python -m benches.fetch

Every contender downloads the same URL list from the same local server (tests/fault_server.py,
run in its own process) that waits a fixed per-path latency (50-200 ms by default) before
answering, as a distant web server would. Each contender gets the same paths with its own
``?run=`` query, so once-only faults (503 then success) hit each of them once.

Contenders, all as separate processes started the same way:
  ceiling        plain aiohttp GETs at high concurrency, doing nothing with the bodies: what
                 this server (and machine) can deliver, measured in the same run
  decode-limit   (clean only) the fetcher's own content check (sha256, header, 1/8-scale JPEG
                 decode) on the same number of the server's images, already in memory, on
                 as many threads as the fetcher uses: what decoding alone allows on this
                 machine, the ceiling of ``pixmo`` with its decode on
  pixmo          ``python -m pixmo_stream.ingest.fetch`` with its defaults (full decode on)
  pixmo-nodecode the same with ``--no-decode``
  img2dataset    ``img2dataset.download`` with resize_mode="no", skip_reencode and
                 disable_all_reencoding (raw bytes kept), 2 processes x 256 threads, found via
                 $IMG2DATASET_PYTHON or ./.venv-i2d/bin/python, skipped when absent

Scenarios: ``clean`` (every URL an image) and ``faults`` (2% each of 404, 503-once, HTML,
connection reset, truncated body, a far-future 429, and 0.5% bodies that drip one byte per
second). A contender still running after ``--limit`` seconds is killed and reported as hung.
Prints a table; ratios are against img2dataset in the same run, and ``pixmo``'s images/s is
also set against ``decode-limit``'s.

Leave a few minutes between runs, and alternate ``--order``: ext4 skips inodes freed in the
last minutes when it allocates new ones, which costs a run that starts soon after one whose
files were deleted up to half a millisecond of CPU per file it creates, the more so the sooner
a contender runs.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_I2D = ROOT / ".venv-i2d" / "bin" / "python"
FAULT_MIX = {
    "404": 0.02,
    "503-once": 0.02,
    "html": 0.02,
    "reset": 0.02,
    "truncated": 0.02,
    "429-days": 0.02,
    "drip": 0.005,
}


# The contenders that write files, in the order they run by default (``--order``).
CONTENDERS = ["pixmo", "pixmo-nodecode", "img2dataset"]


@dataclass
class Result:
    contender: str
    scenario: str
    urls: int
    ok: int | None
    wall_s: float
    cpu_s: float
    hung: bool = False
    note: str = ""

    @property
    def cpu_ms_per_image(self) -> float:
        return 1000 * self.cpu_s / self.ok if self.ok else 0.0

    @property
    def rate(self) -> float:
        return (self.ok or 0) / self.wall_s if self.wall_s > 0 else 0.0


def url_paths(n: int, scenario: str) -> list[str]:
    """``n`` paths; in ``faults`` a fixed, evenly spread share of them misbehave."""
    paths = []
    cumulative = []
    acc = 0.0
    for kind, share in FAULT_MIX.items():
        acc += share
        cumulative.append((acc, kind))
    for i in range(n):
        kind = "img"
        if scenario == "faults":
            # A low-discrepancy position in [0, 1) picks the kind: same mix for any n.
            u = (i * 0.6180339887498949) % 1.0
            kind = next((k for edge, k in cumulative if u < edge), "img")
        paths.append(f"/{kind}/{i}")
    return paths


# -- the server, in its own process ------------------------------------------------------------
def serve(latency: tuple[float, float], lifetime: float, hosts: int) -> None:
    sys.path.insert(0, str(ROOT / "tests"))
    from fault_server import FaultServer

    srv = FaultServer(
        latency=latency,
        image_pool=64,
        image_size=(640, 480),
        lifetime=lifetime,
        drip_interval=1.0,
        hosts=hosts,
    )
    srv.start()
    print(" ".join(map(str, srv.ports)), flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        srv.stop()


def start_server(
    latency: tuple[float, float], lifetime: float, hosts: int
) -> tuple[subprocess.Popen, list[int]]:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "benches.fetch",
            "--serve",
            "--latency",
            str(latency[0]),
            str(latency[1]),
            "--limit",
            str(lifetime),
            "--hosts",
            str(hosts),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    ports = [int(p) for p in proc.stdout.readline().split()]
    return proc, ports


# -- contenders --------------------------------------------------------------------------------
CEILING = textwrap.dedent("""
    import asyncio, sys, time, aiohttp
    urls = open(sys.argv[1]).read().split()
    async def main():
        ok = 0
        conn = aiohttp.TCPConnector(limit=512)
        sem = asyncio.Semaphore(512)
        async with aiohttp.ClientSession(connector=conn) as s:
            async def one(u):
                nonlocal ok
                async with sem:
                    try:
                        async with asyncio.timeout(5):
                            async with s.get(u) as r:
                                await r.read()
                                ok += r.status == 200
                    except Exception:
                        pass
            await asyncio.gather(*(one(u) for u in urls))
        print(ok)
    asyncio.run(main())
""")

IMG2DATASET = textwrap.dedent("""
    import sys, json, glob
    from img2dataset import download
    if __name__ == "__main__":
        download(url_list=sys.argv[1], output_folder=sys.argv[2], input_format="txt",
                 output_format="files", processes_count=2, thread_count=256,
                 resize_mode="no", encode_format="jpg", skip_reencode=True,
                 disable_all_reencoding=True, extract_exif=False, timeout=10, retries=0,
                 number_sample_per_shard=100000, distributor="multiprocessing")
        stats = [json.load(open(p)) for p in glob.glob(sys.argv[2] + "/*_stats.json")]
        print(sum(s["successes"] for s in stats))
""")


DECODE_LIMIT = textwrap.dedent("""
    import concurrent.futures, os, sys, time
    sys.path.insert(0, "tests")
    from fault_server import jpeg_bytes
    from pixmo_stream.ingest.fetch.content import check_image
    from pixmo_stream.ingest.fetch.options import FetchOptions
    n = int(sys.argv[1])
    pool = [jpeg_bytes(f"pool-{i}", (640, 480)) for i in range(64)]  # the server's images
    bodies = [pool[i % 64] for i in range(n)]
    def check(body):
        return check_image(body, None, sha_policy="flag", decode=True).outcome.cached
    threads = FetchOptions().decode_threads
    cpu, wall = time.process_time(), time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(threads) as ex:
        ok = sum(ex.map(check, bodies))
    print(ok, time.perf_counter() - wall, time.process_time() - cpu)
""")


@dataclass
class Timed:
    wall_s: float
    cpu_s: float
    hung: bool
    out: str


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_timed(cmd: list[str], limit: float, env: dict[str, str] | None = None) -> Timed:
    """Run ``cmd``; wall and CPU seconds (its whole process tree), killed after ``limit``."""
    started = time.perf_counter()
    cpu_before = _children_cpu()
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=limit)
        hung = False
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        hung = True
    wall = time.perf_counter() - started
    if proc.returncode not in (0, None) and not hung:
        sys.stderr.write(f"{cmd[:3]} exited {proc.returncode}: {err[-2000:]}\n")
    return Timed(wall, _children_cpu() - cpu_before, hung, out)


def bench_scenario(
    scenario: str,
    n: int,
    ports: list[int],
    work: Path,
    limit: float,
    i2d_python: Path | None,
    order: list[str] = CONTENDERS,
) -> list[Result]:
    paths = url_paths(n, scenario)
    results = []

    def urls_for(contender: str) -> Path:
        f = work / f"{scenario}-{contender}.txt"
        f.write_text(
            "".join(
                f"http://127.0.0.1:{ports[i % len(ports)]}{p}?run={scenario}-{contender}\n"
                for i, p in enumerate(paths)
            )
        )
        return f

    def add(name: str, t: Timed, ok: int | None) -> None:
        note = f"killed after {limit:g} s, still running" if t.hung else ""
        results.append(Result(name, scenario, n, ok, t.wall_s, t.cpu_s, t.hung, note))

    t = run_timed([sys.executable, "-c", CEILING, str(urls_for("ceiling"))], limit)
    add("ceiling", t, None if t.hung else int(t.out or 0))

    env = {**os.environ, "PYTHONPATH": str(ROOT / "python")}
    if scenario == "clean":
        t = run_timed([sys.executable, "-c", DECODE_LIMIT, str(n)], limit, env)
        if not t.hung and t.out.split():
            ok, wall, cpu = t.out.split()
            # The decode alone, timed inside the process (not its start or the images' making).
            results.append(Result("decode-limit", scenario, n, int(ok), float(wall), float(cpu)))

    import pyarrow as pa
    import pyarrow.parquet as pq

    def run_pixmo(name: str, extra: list[str]) -> None:
        listing = urls_for(name).read_text().split()
        parquet = work / f"{scenario}-{name}.parquet"
        pq.write_table(pa.table({"image_url": listing}), parquet)
        cache = work / f"{scenario}-{name}-cache"
        cmd = [sys.executable, "-m", "pixmo_stream.ingest.fetch", str(parquet), "--cache"]
        cmd += [str(cache), "-q", "--json", *extra]
        t = run_timed(cmd, limit, env)
        add(name, t, None if t.hung else int(json.loads(t.out)["cached"]))

    def run_img2dataset() -> None:
        if i2d_python is None:
            return
        script = work / "run_img2dataset.py"
        script.write_text(IMG2DATASET)
        out_dir = work / f"{scenario}-i2d"
        i2d_env = {**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1"}
        cmd = [str(i2d_python), str(script), str(urls_for("img2dataset")), str(out_dir)]
        t = run_timed(cmd, limit, i2d_env)
        lines = t.out.strip().splitlines()
        add("img2dataset", t, None if t.hung or not lines else int(lines[-1]))

    runs = {
        "pixmo": lambda: run_pixmo("pixmo", []),
        "pixmo-nodecode": lambda: run_pixmo("pixmo-nodecode", ["--no-decode"]),
        "img2dataset": run_img2dataset,
    }
    for name in order:
        runs[name]()
    return results


def print_table(results: list[Result]) -> None:
    """images/s (wall clock) and CPU ms per image, each with its ratio to img2dataset's."""
    base = {r.scenario: r for r in results if r.contender == "img2dataset" and not r.hung}
    print(
        f"{'scenario':<8} {'contender':<15} {'urls':>6} {'ok':>6} {'wall s':>8} {'cpu s':>6} "
        f"{'images/s':>9} {'x i2d':>6} {'cpu ms/img':>10} {'x i2d':>6}"
    )
    for r in results:
        ok = "-" if r.ok is None else str(r.ok)
        wall = f"{r.wall_s:.1f}" + ("+" if r.hung else "")
        rate = "hung" if r.hung else f"{r.rate:.0f}"
        cost = r.cpu_ms_per_image
        speed_ratio = cost_ratio = ""
        ref = base.get(r.scenario)
        if ref is not None and r.contender != "img2dataset" and not r.hung and ref.rate:
            speed_ratio = f"{r.rate / ref.rate:.2f}"
            if cost and ref.cpu_ms_per_image:
                cost_ratio = f"{ref.cpu_ms_per_image / cost:.2f}"
        print(
            f"{r.scenario:<8} {r.contender:<15} {r.urls:>6} {ok:>6} {wall:>8} {r.cpu_s:>6.1f} "
            f"{rate:>9} {speed_ratio:>6} {cost:>10.2f} {cost_ratio:>6}  {r.note}"
        )
    print("x i2d: how many times img2dataset's images/s, and how many times less CPU per image")
    limits = {r.scenario: r for r in results if r.contender == "decode-limit" and r.rate}
    for r in results:
        if r.contender == "pixmo" and not r.hung and r.scenario in limits:
            limit = limits[r.scenario]
            print(
                f"{r.scenario}: pixmo (decode on) at {r.rate / limit.rate:.2f}x the decode-limit "
                f"({r.rate:.0f} of {limit.rate:.0f} images/s)"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--urls", type=int, default=4000, help="URLs per scenario")
    parser.add_argument(
        "--latency",
        type=float,
        nargs=2,
        default=(0.05, 0.2),
        metavar=("LOW", "HIGH"),
        help="per-request server latency range, s",
    )
    parser.add_argument(
        "--limit", type=float, default=180.0, help="seconds before a contender is killed as hung"
    )
    parser.add_argument("--scenarios", default="clean,faults")
    parser.add_argument(
        "--order",
        default=",".join(CONTENDERS),
        help="the order the file-writing contenders run in (after the ceiling and the "
        "decode-limit); alternate it between runs so no one always goes first",
    )
    parser.add_argument(
        "--hosts", type=int, default=32, help="distinct hosts (server ports) the URLs spread over"
    )
    parser.add_argument("--json", metavar="FILE", help="also write the results here")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(tuple(args.latency), args.limit, args.hosts)
        return

    i2d = Path(os.environ.get("IMG2DATASET_PYTHON", DEFAULT_I2D))
    i2d_python = i2d if i2d.exists() else None
    if i2d_python is None:
        print(f"img2dataset: skipped ({i2d} not found; set IMG2DATASET_PYTHON)")
    scenarios = args.scenarios.split(",")
    order = args.order.split(",")
    if sorted(order) != sorted(CONTENDERS):
        parser.error(f"--order must name each of {', '.join(CONTENDERS)} once")
    server, ports = start_server(tuple(args.latency), args.limit * 8 * len(scenarios), args.hosts)
    work = Path(tempfile.mkdtemp(prefix="pixmo-fetch-bench-"))
    results: list[Result] = []
    try:
        for scenario in scenarios:
            results += bench_scenario(
                scenario, args.urls, ports, work, args.limit, i2d_python, order
            )
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
        shutil.rmtree(work, ignore_errors=True)
    print(
        f"\n{os.cpu_count()} CPUs (load average {os.getloadavg()[0]:.1f}); {args.hosts} hosts; "
        f"latency {args.latency[0]:g}-{args.latency[1]:g} s per request; 640x480 JPEGs "
        f"(~{_pool_kb():.0f} kB); cpu s = the contender's processes; ratios are of images/s"
    )
    print_table(results)
    if args.json:
        Path(args.json).write_text(
            json.dumps([r.__dict__ | {"images_per_s": r.rate} for r in results], indent=2)
        )


def _pool_kb() -> float:
    sys.path.insert(0, str(ROOT / "tests"))
    from fault_server import jpeg_bytes

    return len(jpeg_bytes("pool-0", (640, 480))) / 1000


if __name__ == "__main__":
    main()
