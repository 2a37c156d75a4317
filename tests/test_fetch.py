"""The image fetcher against a local server that injects one fault per URL path."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import threading
import time
from collections.abc import Iterable
from pathlib import Path

import pytest

import pixmo_stream as ps
from fault_server import FaultServer, image_for
from pixmo_stream.ingest.fetch import (
    FetchError,
    FetchOptions,
    FetchReport,
    FetchState,
    Outcome,
    cache_name,
    fetch_images,
)
from pixmo_stream.ingest.fetch.attempt import opt_out_directive
from pixmo_stream.ingest.fetch.backoff import parse_retry_after
from pixmo_stream.ingest.fetch.hosts import HostGates

FAST = FetchOptions(
    request_timeout=60.0,  # never reached here: a loaded machine must not time an image out
    retries=2,
    backoff_base=0.01,
    backoff_max=0.05,
    retry_after_cap=2.0,
    max_bytes=1_000_000,
)

# path kind -> the outcome it must end in under FAST
FAULTS = {
    "img": Outcome.OK,
    "503-once": Outcome.OK,
    "404": Outcome.NOT_FOUND,
    "410": Outcome.NOT_FOUND,
    "429-days": Outcome.DEFERRED,
    "reset": Outcome.TRUNCATED,
    "truncated": Outcome.TRUNCATED,
    "html": Outcome.BAD_CONTENT,
    "broken": Outcome.BAD_CONTENT,
    "loop": Outcome.REDIRECT_LOOP,
    "huge": Outcome.TOO_LARGE,
    "huge-cl": Outcome.TOO_LARGE,
    "noai": Outcome.OPTED_OUT,
}


@pytest.fixture
def server():
    with FaultServer() as srv:
        yield srv


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def cache_files(cache: Path) -> set[str]:
    return {p.name for p in cache.iterdir() if not p.name.startswith(".")}


def test_every_fault_ends_in_its_outcome_and_only_images_are_cached(server, tmp_path):
    urls = {kind: server.url(f"/{kind}/x") for kind in FAULTS}
    report = fetch_images(
        [(u, None) for u in urls.values()], tmp_path, options=FAST, progress=False
    )

    expected: dict[str, int] = {}
    for outcome in FAULTS.values():
        expected[outcome.value] = expected.get(outcome.value, 0) + 1
    counts = {k: v for k, v in report.counts.items() if v}
    assert counts == expected, _outcomes(tmp_path, urls.values())
    assert report.total == len(FAULTS)
    assert report.success_rate == pytest.approx(2 / len(FAULTS))
    assert not report.deadline_reached and not report.interrupted

    state = FetchState(tmp_path)
    for kind, url in urls.items():
        rec = state.get(url)
        assert rec is not None and rec.outcome is FAULTS[kind], (kind, rec)
    # Exactly the two images are files, under Molmo's names, with the bytes the server sent.
    assert cache_files(tmp_path) == {cache_name(urls["img"]), cache_name(urls["503-once"])}
    for kind in ("img", "503-once"):
        body = (tmp_path / cache_name(urls[kind])).read_bytes()
        assert body == image_for(f"/{kind}/x")
    # Retried by class: 503 once then success; never 404/410; a days-long Retry-After once.
    assert server.count("/503-once/x") == 2
    assert server.count("/404/x") == server.count("/410/x") == 1
    assert server.count("/429-days/x") == 1
    assert server.count("/html/x") == server.count("/noai/x") == 1
    assert server.count("/reset/x") == server.count("/truncated/x") == 1 + FAST.retries
    assert report.requests == server.total_requests() - (server.count("/loop/x") - 1)


def test_ten_redirects_are_followed_and_eleven_are_a_loop(server, tmp_path):
    # /hops/<n>-k answers with exactly n redirects before its image: the docs' limit is
    # "more than 10", so 10 hops end in the image and the 11th redirect is not followed.
    ten, eleven = server.url("/hops/10-a"), server.url("/hops/11-b")
    report = fetch_images([ten, eleven], tmp_path, options=FAST, progress=False)
    assert report.count(Outcome.OK) == 1 and report.count(Outcome.REDIRECT_LOOP) == 1
    state = FetchState(tmp_path)
    assert state.get(ten).outcome is Outcome.OK
    assert (tmp_path / cache_name(ten)).read_bytes() == image_for("/hops/0-a")
    loop = state.get(eleven)
    assert loop.outcome is Outcome.REDIRECT_LOOP and "more than 10 redirects" in loop.detail
    assert server.count("/hops/1-b") == 1 and server.count("/hops/0-b") == 0
    # max_redirects=0 means what it says: no redirect is followed (not "no limit").
    none = dataclasses.replace(FAST, max_redirects=0)
    direct, one = server.url("/hops/0-c"), server.url("/hops/1-c")
    report = fetch_images([direct, one], tmp_path, options=none, progress=False)
    assert report.count(Outcome.OK) == 1 and report.count(Outcome.REDIRECT_LOOP) == 1
    assert FetchState(tmp_path).get(one).outcome is Outcome.REDIRECT_LOOP


def test_sha_policies(server, tmp_path):
    good, moved = server.url("/img/good"), server.url("/img/moved")
    wrong = sha(b"the image this dataset row was made from")
    items = [(good, sha(image_for("/img/good"))), (moved, wrong)]

    strict = fetch_images(
        items, tmp_path / "strict", options=FetchOptions(sha_policy="strict"), progress=False
    )
    assert strict.count(Outcome.OK) == 1 and strict.count(Outcome.SHA_MISMATCH) == 1
    assert cache_files(tmp_path / "strict") == {cache_name(good)}

    flag = fetch_images(
        items, tmp_path / "flag", options=FetchOptions(sha_policy="flag"), progress=False
    )
    assert flag.count(Outcome.OK) == 1 and flag.count(Outcome.SHA_FLAGGED) == 1
    assert cache_files(tmp_path / "flag") == {cache_name(good), cache_name(moved)}
    rec = FetchState(tmp_path / "flag").get(moved)
    assert rec is not None and wrong in rec.detail and rec.sha256 == sha(image_for("/img/moved"))

    off = fetch_images(
        items, tmp_path / "off", options=FetchOptions(sha_policy="off"), progress=False
    )
    assert off.count(Outcome.OK) == 2


def test_sha_mismatch_that_does_not_decode_is_bad_content_even_when_flagging(server, tmp_path):
    url = server.url("/broken/b")
    report = fetch_images([(url, sha(b"x"))], tmp_path, options=FAST, progress=False)
    assert report.count(Outcome.BAD_CONTENT) == 1
    assert cache_files(tmp_path) == set()


def test_rerun_skips_what_it_has_and_retries_only_retryable_failures(server, tmp_path):
    kinds = ["img", "404", "html", "503-once"]
    urls = [server.url(f"/{k}/r") for k in kinds]
    no_retry = FetchOptions(retries=0, backoff_base=0.01)
    first = fetch_images(urls, tmp_path, options=no_retry, progress=False)
    assert first.count(Outcome.SERVER_ERROR) == 1 and first.count(Outcome.OK) == 1
    assert cache_files(tmp_path) == {cache_name(urls[0])}

    second = fetch_images(urls, tmp_path, options=no_retry, progress=False)
    assert second.count(Outcome.OK) == 2  # the 503 answered this time
    assert second.count(Outcome.NOT_FOUND) == 1 and second.count(Outcome.BAD_CONTENT) == 1
    assert second.reused == 3 and second.requests == 1
    assert [server.count(f"/{k}/r") for k in kinds] == [1, 1, 1, 2]

    third = fetch_images(urls, tmp_path, options=FetchOptions(retry_permanent=True), progress=False)
    assert third.requests == 2  # 404 and html asked again; images still not re-downloaded
    assert [server.count(f"/{k}/r") for k in kinds] == [1, 2, 2, 2]


def test_an_existing_molmo_cache_is_used_as_is(server, tmp_path):
    present, failed = server.url("/img/present"), server.url("/img/failed")
    (tmp_path / cache_name(present)).write_bytes(image_for("/img/present"))
    # Molmo's downloader writes the error text of a failed download under the image's name.
    (tmp_path / cache_name(failed)).write_text("HTTPError: 503 Service Unavailable")

    report = fetch_images([present, failed], tmp_path, options=FAST, progress=False)

    assert report.count(Outcome.OK) == 2 and report.reused == 1
    assert server.count("/img/present") == 0 and server.count("/img/failed") == 1
    assert (tmp_path / cache_name(failed)).read_bytes() == image_for("/img/failed")


def test_a_deleted_or_replaced_cache_file_is_fetched_again(server, tmp_path):
    url = server.url("/img/d")
    fetch_images([url], tmp_path, options=FAST, progress=False)
    (tmp_path / cache_name(url)).write_bytes(b"")
    report = fetch_images([url], tmp_path, options=FAST, progress=False)
    assert report.count(Outcome.OK) == 1 and server.count("/img/d") == 2
    assert (tmp_path / cache_name(url)).read_bytes() == image_for("/img/d")


def test_a_dripping_body_ends_at_the_request_timeout(server, tmp_path):
    # The drip sends its 1,000 bytes over 200 s: the attempt's deadline covers the body.
    url = server.url("/drip/x")
    opts = dataclasses.replace(FAST, request_timeout=0.5)
    report = fetch_images([url], tmp_path, options=opts, progress=False)
    assert report.count(Outcome.TIMEOUT) == 1
    rec = FetchState(tmp_path).get(url)
    assert rec is not None and "within 0.5 s (reading the body)" in rec.detail
    assert server.count("/drip/x") == 1  # its deadline spent: left for the next run
    assert cache_files(tmp_path) == set()


def test_throttled_host_does_not_slow_the_other(tmp_path):
    opts = FetchOptions(per_host=4, retries=3, backoff_base=0.01, retry_after_cap=5.0)
    # The throttled host answers its first 4 requests 429 (Retry-After 1 s) and holds every
    # later one unanswered until the fast host has had all of its requests: the run can only
    # get there if the fast host's URLs do not wait behind the throttled host's.
    with FaultServer(throttle_first=4, hold_after=4) as slow, FaultServer() as fast:
        slow_urls = [slow.url(f"/throttle/{i}") for i in range(8)]
        fast_urls = [fast.url(f"/img/{i}") for i in range(40)]
        # Interleaved, so the fast host's URLs queue behind the throttled host's.
        items = [u for pair in zip(slow_urls, fast_urls[:8], strict=True) for u in pair]
        items += fast_urls[8:]
        done: dict[str, FetchReport] = {}
        run = threading.Thread(
            target=lambda: done.update(
                r=fetch_images(items, tmp_path, options=opts, progress=False)
            )
        )
        run.start()
        try:
            fast_served = fast.wait_for_requests(40, timeout=120)
        finally:
            slow.release()
            run.join(120)
        assert fast_served, "the fast host's URLs waited for the throttled host"
        report = done["r"]

        assert report.count(Outcome.OK) == 48
        assert list(report.throttled_hosts) == [f"127.0.0.1:{slow.port}"]
        # The throttled host's requests resumed only after its Retry-After of 1 s.
        resumed = min(t for t, _ in slow.arrivals[4:])
        assert resumed - min(t for t, _ in slow.arrivals) >= 1.0


def test_a_throttle_pauses_its_own_host_only():
    gates = HostGates(per_host=4, rate=None)
    gates["http://slow.example/a"].throttled(3600.0)

    async def enter(url: str) -> bool:
        async with gates[url]:
            return True

    async def main() -> None:
        assert await asyncio.wait_for(enter("http://fast.example/b"), 60)  # at once
        with pytest.raises(TimeoutError):  # paused for an hour
            await asyncio.wait_for(enter("http://slow.example/c"), 0.05)

    asyncio.run(main())


def test_per_host_concurrency_is_capped(tmp_path):
    with FaultServer(delay=0.05) as srv:
        urls = [srv.url(f"/img/{i}") for i in range(24)]
        report = fetch_images(
            urls, tmp_path, options=FetchOptions(per_host=3, concurrency=64), progress=False
        )
        assert report.count(Outcome.OK) == 24
        assert srv.max_in_flight <= 3


def test_overall_deadline_ends_the_run_and_keeps_nothing_partial(server, tmp_path):
    urls = [server.url(f"/drip/{i}") for i in range(3)] + [server.url("/img/fine")]
    # The image is cached by a first run, so the deadline run's answer for it cannot depend
    # on how fast this machine is; the drips (200 s each) cannot finish before it.
    fetch_images(urls[-1:], tmp_path, progress=False)
    opts = FetchOptions(request_timeout=60, deadline=0.8)
    report = fetch_images(urls, tmp_path, options=opts, progress=False)
    assert report.deadline_reached
    assert report.count(Outcome.NOT_ATTEMPTED) == 3 and report.count(Outcome.OK) == 1
    assert cache_files(tmp_path) == {cache_name(urls[-1])}
    assert FetchState(tmp_path).get(urls[0]) is None  # nothing recorded: the next run retries


def test_connect_errors_are_retried_with_backoff(tmp_path):
    with FaultServer() as srv:
        port = srv.port
    url = f"http://127.0.0.1:{port}/img/closed"
    report = fetch_images([url], tmp_path, options=FAST, progress=False)
    assert report.count(Outcome.CONNECT_ERROR) == 1
    assert report.requests == 1 + FAST.retries
    rec = FetchState(tmp_path).get(url)
    assert rec is not None and rec.attempts == 1 + FAST.retries and rec.outcome.retryable


def test_invalid_urls_and_items(tmp_path):
    report = fetch_images(
        ["not a url", "ftp://example.invalid/x.jpg"], tmp_path, options=FAST, progress=False
    )
    assert report.count(Outcome.INVALID_URL) == 2
    with pytest.raises(ValueError, match="64 hex digits"):
        fetch_images([("http://127.0.0.1:9/x", "abc")], tmp_path, progress=False)
    with pytest.raises(TypeError, match="item 0"):
        fetch_images([(b"http://127.0.0.1:9/x", None)], tmp_path, progress=False)  # type: ignore[list-item]


def test_repeated_urls_are_fetched_once(server, tmp_path):
    url = server.url("/img/rep")
    report = fetch_images([(url, None)] * 5, tmp_path, options=FAST, progress=False)
    assert report.total == 1 and report.count(Outcome.OK) == 1 and server.count("/img/rep") == 1


def test_one_cache_one_run_at_a_time(tmp_path):
    with FetchState(tmp_path, writable=True):
        with pytest.raises(FetchError, match="another fetch") as info:
            fetch_images(["http://127.0.0.1:9/x"], tmp_path, progress=False)
    assert isinstance(info.value, ps.PixmoError)


def test_corrupt_state_file_is_a_clear_error(tmp_path):
    (tmp_path / ".pixmo-fetch.sqlite").write_bytes(b"this is not a database" * 100)
    with pytest.raises(FetchError, match="pixmo-fetch.sqlite"):
        fetch_images(["http://127.0.0.1:9/x"], tmp_path, progress=False)


def test_options_are_checked():
    with pytest.raises(ValueError, match="concurrency"):
        FetchOptions(concurrency=0)
    with pytest.raises(ValueError, match="sha_policy"):
        FetchOptions(sha_policy="maybe")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="opt_out_directives"):
        FetchOptions(opt_out_directives="noai")  # type: ignore[arg-type]


def test_opt_out_directives_apply_to_us_only():
    agent = "pixmo-stream-fetch/0.1"
    wanted = ("noai", "noimageai")
    assert opt_out_directive(["noindex, noai"], wanted, agent) == "noai"
    assert opt_out_directive(["otherbot: noai"], wanted, agent) is None
    assert opt_out_directive(["pixmo-stream-fetch: noimageai"], wanted, agent) == "noimageai"
    assert opt_out_directive(["noindex", "nofollow"], wanted, agent) is None


def test_retry_after_parsing():
    now = 1_000_000_000.0
    assert parse_retry_after("120", now=now) == 120
    assert parse_retry_after("Sun, 09 Sep 2001 01:48:40 GMT", now=now) == pytest.approx(120)
    assert parse_retry_after("soon", now=now) is None
    assert parse_retry_after(None) is None


def test_a_full_disk_stops_the_run_and_keeps_what_was_written(server, tmp_path, monkeypatch):
    from pixmo_stream.ingest.fetch.cache import ImageCache

    real_write = ImageCache.write
    written: list[str] = []

    def write_until_full(self: ImageCache, url: str, body: bytes) -> None:
        if len(written) == 2:
            raise OSError(28, "No space left on device")
        real_write(self, url, body)
        written.append(url)

    monkeypatch.setattr(ImageCache, "write", write_until_full)
    urls = [server.url(f"/img/full{i}") for i in range(6)]
    with pytest.raises(FetchError, match="No space left on device") as info:
        fetch_images(urls, tmp_path, options=FetchOptions(concurrency=1), progress=False)
    assert cache_name(urls[2]) in str(info.value)
    assert cache_files(tmp_path) == {cache_name(u) for u in written}
    state = FetchState(tmp_path)
    assert [state.get(u).outcome for u in written] == [Outcome.OK, Outcome.OK]


def test_a_stricter_rerun_applies_its_policy_to_what_is_cached(server, tmp_path):
    url = server.url("/img/resaved")
    items = [(url, sha(b"the bytes the annotators saw"))]
    flagged = fetch_images(items, tmp_path, options=FetchOptions(sha_policy="flag"), progress=False)
    assert flagged.count(Outcome.SHA_FLAGGED) == 1 and cache_files(tmp_path)
    again = fetch_images(items, tmp_path, options=FetchOptions(sha_policy="flag"), progress=False)
    assert again.count(Outcome.SHA_FLAGGED) == 1 and again.reused == 1
    strict = fetch_images(
        items, tmp_path, options=FetchOptions(sha_policy="strict"), progress=False
    )
    assert strict.count(Outcome.SHA_MISMATCH) == 1
    assert cache_files(tmp_path) == set()
    assert server.count("/img/resaved") == 2


def test_per_host_rate_spaces_request_starts(tmp_path):
    with FaultServer() as srv:
        urls = [srv.url(f"/img/rate{i}") for i in range(6)]
        started = time.monotonic()
        report = fetch_images(
            urls, tmp_path, options=FetchOptions(per_host_rate=10.0), progress=False
        )
        assert report.count(Outcome.OK) == 6
        # Starts are at least 0.1 s apart, so the sixth cannot arrive before 0.5 s.
        assert max(t for t, _ in srv.arrivals) - started >= 0.5


def _outcomes(cache: Path, urls: Iterable[str]) -> dict[str, str]:
    """Each URL's recorded outcome and detail, for an assertion's message."""
    with FetchState(cache) as state:
        records = {u: state.get(u) for u in urls}
    return {u: f"{r.outcome.value}: {r.detail}" if r else "no record" for u, r in records.items()}


def test_http_proxy_and_no_proxy_from_the_environment(server, tmp_path, monkeypatch):
    # The fault server stands in for a proxy: it answers the absolute-form request for a host
    # that does not exist with the image of its path.
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{server.port}")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    via_proxy = "http://no-such-host.invalid/img/proxied"
    report = fetch_images([via_proxy], tmp_path / "a", options=FAST, progress=False)
    assert report.count(Outcome.OK) == 1, _outcomes(tmp_path / "a", [via_proxy])
    assert server.count("/img/proxied") == 1

    # NO_PROXY: the request goes straight to the host, not to the (closed) proxy.
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    direct = server.url("/img/direct")
    report = fetch_images([direct], tmp_path / "b", options=FAST, progress=False)
    assert report.count(Outcome.OK) == 1 and server.count("/img/direct") == 1


def test_state_batches_commits_and_looks_up_many(tmp_path):
    from pixmo_stream.ingest.fetch import UrlRecord

    urls = [f"http://h/{i}" for i in range(600)]
    with FetchState(tmp_path, writable=True) as state:
        for i, url in enumerate(urls):
            rec = UrlRecord(url, Outcome.NOT_FOUND, 404, "HTTP 404", None, None, 1, float(i))
            assert state.record(rec, commit_when_full=False) == i + 1  # queued, not committed
        assert FetchState(tmp_path).get(urls[0]) is None  # another reader sees no commit yet
        assert state.get(urls[-1]) is not None  # this one sees what it queued
        found = state.get_many([*urls[::7], "http://h/absent"])
        assert set(found) == set(urls[::7]) and found[urls[7]].updated == 7.0
        state.flush()
        assert len(FetchState(tmp_path)) == 600
        assert set(FetchState(tmp_path).get_many(urls)) == set(urls)  # 2 queries of 500


def test_offload_answers_the_loop_and_passes_errors_on():
    import asyncio

    from pixmo_stream.ingest.fetch.offload import Offload

    def square_or_fail(x: int) -> int:
        if x == 13:
            raise OSError("unlucky")
        return x * x

    async def main() -> tuple[list[int], BaseException]:
        pool = Offload(2, "test-offload", asyncio.get_running_loop())
        try:
            squares = await asyncio.gather(
                *(pool.run(square_or_fail, i) for i in range(200) if i != 13)
            )
            with pytest.raises(OSError, match="unlucky") as info:
                await pool.run(square_or_fail, 13)
            return list(squares), info.value
        finally:
            pool.shutdown()

    squares, error = asyncio.run(main())
    assert squares == [i * i for i in range(200) if i != 13]
    assert isinstance(error, OSError)


def test_without_decoding_a_cut_body_is_still_not_cached(server, tmp_path):
    # /broken/ sends half a JPEG with a Content-Length that matches it: only the format's own
    # end (EOI after the scan) tells it from an image.
    urls = [server.url("/broken/n"), server.url("/img/n")]
    opts = dataclasses.replace(FAST, decode=False)
    report = fetch_images(urls, tmp_path, options=opts, progress=False)
    assert report.count(Outcome.BAD_CONTENT) == 1 and report.count(Outcome.OK) == 1
    assert cache_files(tmp_path) == {cache_name(urls[1])}
    rec = FetchState(tmp_path).get(urls[0])
    assert rec is not None and "truncated JPEG" in rec.detail


def _encoded(fmt: str, **kw) -> bytes:
    import io

    from PIL import Image

    img = Image.frombytes("RGB", (96, 64), bytes(range(256)) * 72)
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


@pytest.mark.parametrize(
    "fmt,kw",
    [("JPEG", {}), ("JPEG", {"progressive": True}), ("PNG", {}), ("GIF", {}), ("WEBP", {})],
)
def test_a_cut_file_of_each_format_is_caught_without_decoding(fmt, kw):
    from pixmo_stream.ingest.fetch.content import image_problem

    whole = _encoded(fmt, **kw)
    assert image_problem(whole, decode=False) is None
    assert image_problem(whole + b"\0" * 7, decode=False) is None  # padding after the end
    cut = whole[: len(whole) - max(2, len(whole) // 5)]
    problem = image_problem(cut, decode=False)
    assert problem is not None and str(len(cut)) in problem, problem


def test_a_thumbnail_end_marker_does_not_make_a_cut_jpeg_whole():
    from pixmo_stream.ingest.fetch.content import image_problem

    whole = _encoded("JPEG")
    thumb = b"Exif\0\0" + _encoded("JPEG")  # a whole JPEG, EOI included, inside APP1
    app1 = b"\xff\xe1" + (len(thumb) + 2).to_bytes(2, "big") + thumb
    with_thumb = whole[:2] + app1 + whole[2:]
    assert image_problem(with_thumb, decode=False) is None
    assert image_problem(with_thumb[:-300], decode=False) is not None
    # Bytes after the EOI (as some cameras append) are tolerated.
    assert image_problem(with_thumb + b"trailing data", decode=False) is None
