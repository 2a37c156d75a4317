"""``fetch_images``: download many image URLs into a cache, concurrently and resumably.

One asyncio event loop drives hundreds of requests; checks and file writes run in a small
thread pool, and the state's look-ups (a query per 500 URLs, with a ``stat`` of each URL's
cache file) and commits (one transaction per 256 outcomes or half a second) on a thread of
their own, so the loop never blocks on the disk. Each distinct URL ends with exactly one
:class:`Outcome`, recorded in the state as soon as it is known, after its image (if any) is in
the cache under its final name.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import os
import random
import sys
import time
import urllib.request
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import aiohttp

from .attempt import AttemptResult, attempt
from .backoff import backoff_delay
from .cache import ImageCache
from .content import ContentVerdict, check_image
from .errors import FetchError, FetchInterrupted
from .hosts import HostGates
from .offload import Offload
from .options import FetchOptions
from .outcome import Outcome
from .report import FetchReport
from .state import COMMIT_EVERY, FLUSH_SECONDS, FetchState, UrlRecord

FetchItem = tuple[str, str | None]
# A queued download: url, expected sha256, whether a file was in the cache under its name.
_Job = tuple[str, str | None, bool]
_LOOKUP_CHUNK = 500
_READ_BUFSIZE = 256 * 1024
_THROTTLE_STATUSES = (429, 503)


def fetch_images(
    items: Iterable[FetchItem | str],
    cache_dir: str | os.PathLike[str],
    *,
    options: FetchOptions | None = None,
    progress: bool = True,
) -> FetchReport:
    """Download each ``(url, expected_sha256 or None)`` of ``items`` into ``cache_dir``.

    A URL repeated in ``items`` is fetched once. A URL already cached, or one a previous run
    found permanently gone, costs no request; what failed retryably is tried again. Returns the
    report; on Ctrl-C raises :class:`FetchInterrupted` (a ``KeyboardInterrupt``) carrying the
    report of what was done, all of which is kept.
    """
    opts = options if options is not None else FetchOptions()
    todo = distinct_urls(items)
    directory = Path(cache_dir)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise FetchError(
            f"{directory}: cannot create the cache directory: {exc}", path=str(directory)
        ) from exc
    with FetchState(directory, writable=True) as state:
        cache = ImageCache(directory)
        cache.remove_stale_temporaries()
        run = _Run(todo, cache, state, opts, progress)
        try:
            _run_coroutine(run.main())
        except KeyboardInterrupt as exc:
            run.finish(interrupted=True)
            raise FetchInterrupted(run.report) from exc
    return run.report


def distinct_urls(items: Iterable[FetchItem | str]) -> dict[str, str | None]:
    """``url -> expected sha256`` in first-seen order; a later row may supply a missing hash."""
    todo: dict[str, str | None] = {}
    for index, item in enumerate(items):
        url, sha = (item, None) if isinstance(item, str) else item
        if not isinstance(url, str):
            raise TypeError(f"item {index}: the URL must be a str, got {type(url).__name__}")
        if sha is not None:
            if not isinstance(sha, str) or len(sha) != 64 or not _is_hex(sha):
                raise ValueError(
                    f"item {index} ({url}): expected sha256 must be 64 hex digits "
                    f"or None, got {sha!r}"
                )
            sha = sha.lower()
        if todo.get(url) is None:
            todo[url] = sha
    return todo


def _is_hex(text: str) -> bool:
    try:
        int(text, 16)
    except ValueError:
        return False
    return True


def _run_coroutine(coro: Any) -> None:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        asyncio.run(coro)
        return
    # Called from inside a running loop (a notebook): give the run a loop of its own.
    with concurrent.futures.ThreadPoolExecutor(1) as runner:
        runner.submit(asyncio.run, coro).result()


class _Run:
    def __init__(
        self,
        todo: dict[str, str | None],
        cache: ImageCache,
        state: FetchState,
        opts: FetchOptions,
        progress: bool,
    ) -> None:
        from tqdm import tqdm

        self.todo = todo
        self.cache = cache
        self.state = state
        self.opts = opts
        self.gates = HostGates(opts.per_host, opts.per_host_rate)
        self.report = FetchReport(total=len(todo))
        self.unfinished = set(todo)
        # Written to the cache by a check thread, not yet settled by the event loop.
        self.kept_unsettled: dict[str, tuple[ContentVerdict, int]] = {}
        self.rng = random.Random()
        self.flush_now = asyncio.Event()
        self.n_settled = 0  # URLs with their outcome, and how many of them are cached
        self.n_cached = 0
        self.started = time.monotonic()
        self.finished = False
        self.bar = tqdm(
            total=len(todo),
            desc="fetch",
            unit="img",
            file=sys.stderr,
            disable=not progress,
            dynamic_ncols=True,
            smoothing=0.05,
        )

    async def main(self) -> None:
        opts = self.opts
        timeout = aiohttp.ClientTimeout(
            total=None, connect=opts.connect_timeout, sock_connect=opts.connect_timeout
        )
        headers = {"User-Agent": opts.user_agent, "Accept": "image/*,*/*;q=0.8"}
        queue: asyncio.Queue[_Job | None] = asyncio.Queue(2 * opts.concurrency)
        pool = Offload(opts.decode_threads, "pixmo-fetch-check", asyncio.get_running_loop())
        # One thread owns the state's disk work: look-ups (and the stat of each cache file)
        # ahead of the workers, and the batched commits.
        state_pool = concurrent.futures.ThreadPoolExecutor(1, "pixmo-fetch-state")
        try:
            async with aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=opts.concurrency, ttl_dns_cache=300),
                timeout=timeout,
                headers=headers,
                # Buffer a whole typical image per connection before pausing the socket
                # (aiohttp's default, 64 KiB, pauses and resumes it on every photo).
                read_bufsize=_READ_BUFSIZE,
                trust_env=_environment_configures_proxies(),
            ) as session:
                n_workers = min(opts.concurrency, max(1, len(self.todo)))
                try:
                    async with asyncio.timeout(opts.deadline):
                        # A task group: if one worker fails (a full disk) or a commit does,
                        # the others and the producer stop too, instead of waiting forever.
                        async with asyncio.TaskGroup() as group:
                            flusher = group.create_task(self._flush_periodically(state_pool))
                            tasks = [
                                group.create_task(self._worker(session, queue, pool))
                                for _ in range(n_workers)
                            ]
                            tasks.append(
                                group.create_task(self._produce(queue, n_workers, state_pool))
                            )
                            await asyncio.gather(*tasks)
                            flusher.cancel()
                except TimeoutError:
                    self.report.deadline_reached = True
                except ExceptionGroup as failed:
                    raise failed.exceptions[0] from None
        finally:
            pool.shutdown()
            state_pool.shutdown(wait=True, cancel_futures=True)
            self.finish()

    async def _produce(
        self,
        queue: asyncio.Queue[_Job | None],
        n_workers: int,
        state_pool: concurrent.futures.Executor,
    ) -> None:
        """Queue every URL a previous run's record cannot answer; look-ups run a chunk ahead."""
        loop = asyncio.get_running_loop()
        items = iter(self.todo.items())

        def look_up_next() -> asyncio.Future[list[tuple[str, str | None, Any, int | None]]]:
            chunk = list(itertools.islice(items, _LOOKUP_CHUNK))
            return loop.run_in_executor(state_pool, self._look_up, chunk)

        ahead = look_up_next()
        while looked := await ahead:
            ahead = look_up_next()
            for url, sha, rec, size in looked:
                if not self._reuse(url, sha, rec, size):
                    await queue.put((url, sha, size is not None))
        for _ in range(n_workers):
            await queue.put(None)

    def _look_up(
        self, chunk: list[tuple[str, str | None]]
    ) -> list[tuple[str, str | None, UrlRecord | None, int | None]]:
        """On the state thread: each URL's record and the size of its cache file, if any."""
        records = self.state.get_many(url for url, _ in chunk)
        size = self.cache.size
        return [(url, sha, records.get(url), size(url)) for url, sha in chunk]

    async def _flush_periodically(self, state_pool: concurrent.futures.Executor) -> None:
        """Commit finished URLs every 256 or twice a second (on the state thread), so a kill
        loses at most that much state."""
        loop = asyncio.get_running_loop()
        while True:
            try:
                await asyncio.wait_for(self.flush_now.wait(), FLUSH_SECONDS)
            except TimeoutError:
                pass
            self.flush_now.clear()
            await loop.run_in_executor(state_pool, self.state.flush)

    def finish(self, *, interrupted: bool = False) -> None:
        """Close the books (once): what never got an answer is ``not_attempted``."""
        self.report.interrupted = self.report.interrupted or interrupted
        if self.finished:
            return
        self.finished = True
        # Images a check thread stored while the run was being stopped (Ctrl-C, the overall
        # deadline) are whole and checked: record them, so the report and the state agree
        # with the cache.
        for url, (verdict, size) in list(self.kept_unsettled.items()):
            if url in self.unfinished:
                self.state.record(
                    UrlRecord(url, verdict.outcome, None, verdict.detail, verdict.sha256, size, 1,
                              time.time())
                )  # fmt: skip
                self._settled(url, verdict.outcome, reused=False)
        if self.unfinished:
            self.report.counts[Outcome.NOT_ATTEMPTED.value] += len(self.unfinished)
        self.report.elapsed_s = time.monotonic() - self.started
        self.report.throttled_hosts = self.gates.throttled_hosts()
        self.state.flush()
        self.bar.close()

    def _reuse(self, url: str, sha: str | None, rec: UrlRecord | None, size: int | None) -> bool:
        """Answer ``url`` from a previous run's record when that needs no request (``size``:
        of its cache file, ``None`` if there is none)."""
        if rec is None:
            return False
        if rec.outcome.cached:
            if size != rec.size:
                return False
            outcome = self._stored_verdict(rec, sha)
            if outcome is None:
                return False
            self._settled(url, outcome, reused=True)
            return True
        if not rec.outcome.retryable and not self.opts.retry_permanent:
            self._settled(url, rec.outcome, reused=True)
            return True
        return False

    def _stored_verdict(self, rec: UrlRecord, sha: str | None) -> Outcome | None:
        """A cached image's outcome under today's hash and policy (``None``: check it again)."""
        if sha is None or self.opts.sha_policy == "off" or rec.sha256 == sha:
            return Outcome.OK
        return Outcome.SHA_FLAGGED if self.opts.sha_policy == "flag" else None

    async def _worker(
        self,
        session: aiohttp.ClientSession,
        queue: asyncio.Queue[_Job | None],
        pool: Offload,
    ) -> None:
        state = self.state
        while (job := await queue.get()) is not None:
            url, sha, has_file = job
            rec, reused = await self._settle(session, pool, url, sha, has_file)
            if state.record(rec, commit_when_full=False) >= COMMIT_EVERY:
                self.flush_now.set()
            self._settled(url, rec.outcome, reused=reused)

    def _settled(self, url: str, outcome: Outcome, *, reused: bool) -> None:
        self.unfinished.discard(url)
        self.kept_unsettled.pop(url, None)
        self.report.counts[outcome.value] += 1
        self.report.reused += reused
        self.n_cached += outcome.cached
        self.n_settled += 1
        if not self.bar.disable:
            self.bar.update(1)
            if self.n_settled % 64 == 0:
                failed = self.n_settled - self.n_cached
                self.bar.set_postfix_str(f"ok={self.n_cached} failed={failed}", refresh=False)

    async def _settle(
        self,
        session: aiohttp.ClientSession,
        pool: Offload,
        url: str,
        sha: str | None,
        has_file: bool,
    ) -> tuple[UrlRecord, bool]:
        if has_file:
            # A file with no usable record (a Molmo cache, or a run killed before it committed
            # its state): accept it if it passes the same check a download would.
            verdict, size = await pool.run(self._check_cached, url, sha)
            if verdict is not None and verdict.outcome.cached:
                rec = UrlRecord(
                    url, verdict.outcome, None, "found in the cache", verdict.sha256, size, 0,
                    time.time(),
                )  # fmt: skip
                return rec, True
        return await self._download(session, pool, url, sha), False

    async def _download(
        self,
        session: aiohttp.ClientSession,
        pool: Offload,
        url: str,
        sha: str | None,
    ) -> UrlRecord:
        opts = self.opts
        gate = self.gates[url]
        result = AttemptResult(Outcome.NOT_ATTEMPTED)
        for attempt_no in range(opts.retries + 1):
            async with gate:
                result = await attempt(session, url, opts)
            self.report.requests += 1
            if result.outcome is None:
                gate.succeeded()
                return await self._store(pool, url, sha, result, attempt_no + 1)
            if not result.outcome.retryable or _spent_its_deadline(result):
                break
            throttling = result.status in _THROTTLE_STATUSES
            wait = result.retry_after
            if wait is not None and wait > opts.retry_after_cap:
                if throttling:
                    gate.throttled(
                        backoff_delay(gate.streak, opts.backoff_base, opts.backoff_max, self.rng)
                    )
                detail = (
                    f"{result.detail}: Retry-After {wait:,.0f} s is over the cap of "
                    f"{opts.retry_after_cap:g} s; left for a later run"
                )
                result = AttemptResult(Outcome.DEFERRED, result.status, detail)
                break
            if wait is None:
                wait = backoff_delay(attempt_no, opts.backoff_base, opts.backoff_max, self.rng)
            if throttling:
                gate.throttled(wait)
            if attempt_no < opts.retries:
                await asyncio.sleep(wait)
        assert result.outcome is not None
        return UrlRecord(
            url,
            result.outcome,
            result.status,
            result.detail,
            None,
            None,
            attempt_no + 1,
            time.time(),
        )

    async def _store(
        self,
        pool: Offload,
        url: str,
        sha: str | None,
        result: AttemptResult,
        attempts: int,
    ) -> UrlRecord:
        body = result.body
        assert body is not None
        self.report.bytes_downloaded += len(body)
        verdict = await pool.run(self._check_and_keep, url, body, sha)
        detail = verdict.detail
        if verdict.outcome is Outcome.BAD_CONTENT and result.content_type:
            detail = f"{detail} (Content-Type {result.content_type})"
        return UrlRecord(
            url,
            verdict.outcome,
            result.status,
            detail,
            verdict.sha256,
            len(body) if verdict.outcome.cached else None,
            attempts,
            time.time(),
        )

    # The two below run in the pool: one hand-off per image, check and file work together.

    def _check_and_keep(self, url: str, body: bytes, sha: str | None) -> ContentVerdict:
        verdict = check_image(body, sha, sha_policy=self.opts.sha_policy, decode=self.opts.decode)
        if verdict.outcome.cached:
            try:
                self.cache.write(url, body)
            except OSError as exc:  # a full or read-only disk: stop, keep what is written
                path = self.cache.path(url)
                raise FetchError(f"{path}: cannot write {url}: {exc}", path=str(path)) from exc
            self.kept_unsettled[url] = (verdict, len(body))
        return verdict

    def _check_cached(self, url: str, sha: str | None) -> tuple[ContentVerdict | None, int]:
        body = self.cache.read(url)
        if body is None:
            return None, 0
        verdict = check_image(body, sha, sha_policy=self.opts.sha_policy, decode=self.opts.decode)
        if not verdict.outcome.cached:
            self.cache.discard(url)
        return verdict, len(body)


def _environment_configures_proxies() -> bool:
    """Whether ``HTTP(S)_PROXY`` or a netrc file is set up. Only then is aiohttp's ``trust_env``
    (HTTP(S)_PROXY, NO_PROXY and netrc, as requests, Molmo's downloader, honours them) turned
    on: it looks both up again on two thread hops per request, which on two cores cost more CPU
    than the rest of the request."""
    if any(scheme in ("http", "https", "ws", "wss") for scheme in urllib.request.getproxies()):
        return True
    if os.environ.get("NETRC"):
        return True
    try:
        home = Path.home()
    except (RuntimeError, KeyError):  # no home directory: aiohttp finds no netrc either
        return False
    return (home / ".netrc").exists() or (home / "_netrc").exists()


def _spent_its_deadline(result: AttemptResult) -> bool:
    """Our own deadline ran out: asking again at once would most likely wait as long again,
    so the URL is left (retryable) for a later run. A server's 408 is retried like a 5xx."""
    return result.outcome is Outcome.TIMEOUT and result.status != 408
