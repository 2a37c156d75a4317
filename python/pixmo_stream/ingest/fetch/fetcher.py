"""``fetch_images``: download many image URLs into a cache, concurrently and resumably.

One asyncio event loop drives hundreds of requests; checks and file writes run in a small
thread pool. Each distinct URL ends with exactly one :class:`Outcome`, recorded in the state
as soon as it is known, after its image (if any) is in the cache under its final name.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import random
import sys
import time
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
from .options import FetchOptions
from .outcome import Outcome
from .report import FetchReport
from .state import FLUSH_SECONDS, FetchState, UrlRecord

FetchItem = tuple[str, str | None]
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
        pool = concurrent.futures.ThreadPoolExecutor(opts.decode_threads, "pixmo-fetch-check")
        connector = aiohttp.TCPConnector(limit=opts.concurrency, ttl_dns_cache=300)
        timeout = aiohttp.ClientTimeout(
            total=None, connect=opts.connect_timeout, sock_connect=opts.connect_timeout
        )
        headers = {"User-Agent": opts.user_agent, "Accept": "image/*,*/*;q=0.8"}
        queue: asyncio.Queue[tuple[str, str | None] | None] = asyncio.Queue(2 * opts.concurrency)
        try:
            async with aiohttp.ClientSession(
                # trust_env: HTTP(S)_PROXY and NO_PROXY apply, as with requests (Molmo's).
                connector=connector,
                timeout=timeout,
                headers=headers,
                trust_env=True,
            ) as session:
                n_workers = min(opts.concurrency, max(1, len(self.todo)))
                flusher = asyncio.create_task(self._flush_periodically())
                try:
                    async with asyncio.timeout(opts.deadline):
                        # A task group: if one worker fails (a full disk), the others and
                        # the producer stop too, instead of waiting on a queue forever.
                        async with asyncio.TaskGroup() as group:
                            for _ in range(n_workers):
                                group.create_task(self._worker(session, queue, pool))
                            group.create_task(self._produce(queue, n_workers))
                except TimeoutError:
                    self.report.deadline_reached = True
                except ExceptionGroup as failed:
                    raise failed.exceptions[0] from None
                finally:
                    flusher.cancel()
                    await asyncio.gather(flusher, return_exceptions=True)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            self.finish()

    async def _produce(
        self, queue: asyncio.Queue[tuple[str, str | None] | None], n_workers: int
    ) -> None:
        for url, sha in self.todo.items():
            if not self._reuse(url, sha):
                await queue.put((url, sha))
        for _ in range(n_workers):
            await queue.put(None)

    async def _flush_periodically(self) -> None:
        """Commit finished URLs twice a second, so a kill loses at most that much state."""
        while True:
            await asyncio.sleep(FLUSH_SECONDS)
            self.state.flush()

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

    def _reuse(self, url: str, sha: str | None) -> bool:
        """Answer ``url`` from a previous run's record when that needs no request."""
        rec = self.state.get(url)
        if rec is None:
            return False
        if rec.outcome.cached:
            if self.cache.size(url) != rec.size:
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
        queue: asyncio.Queue[tuple[str, str | None] | None],
        pool: concurrent.futures.Executor,
    ) -> None:
        while (job := await queue.get()) is not None:
            url, sha = job
            rec, reused = await self._settle(session, pool, url, sha)
            self.state.record(rec)
            self._settled(url, rec.outcome, reused=reused)

    def _settled(self, url: str, outcome: Outcome, *, reused: bool) -> None:
        self.unfinished.discard(url)
        self.kept_unsettled.pop(url, None)
        self.report.counts[outcome.value] += 1
        self.report.reused += reused
        self.bar.update(1)
        if self.bar.n % 64 == 0:
            failed = self.bar.n - self.report.cached
            self.bar.set_postfix_str(f"ok={self.report.cached} failed={failed}", refresh=False)

    async def _settle(
        self,
        session: aiohttp.ClientSession,
        pool: concurrent.futures.Executor,
        url: str,
        sha: str | None,
    ) -> tuple[UrlRecord, bool]:
        if self.cache.size(url) is not None:
            # A file with no usable record (a Molmo cache, or a run killed before it committed
            # its state): accept it if it passes the same check a download would.
            loop = asyncio.get_running_loop()
            verdict, size = await loop.run_in_executor(pool, self._check_cached, url, sha)
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
        pool: concurrent.futures.Executor,
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
        pool: concurrent.futures.Executor,
        url: str,
        sha: str | None,
        result: AttemptResult,
        attempts: int,
    ) -> UrlRecord:
        loop = asyncio.get_running_loop()
        body = result.body
        assert body is not None
        self.report.bytes_downloaded += len(body)
        verdict = await loop.run_in_executor(pool, self._check_and_keep, url, body, sha)
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


def _spent_its_deadline(result: AttemptResult) -> bool:
    """Our own deadline ran out: asking again at once would most likely wait as long again,
    so the URL is left (retryable) for a later run. A server's 408 is retried like a 5xx."""
    return result.outcome is Outcome.TIMEOUT and result.status != 408
