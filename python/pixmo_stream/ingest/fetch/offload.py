"""Blocking work (image checks, file writes) on a few threads, answered to one event loop.

``loop.run_in_executor`` costs, per call, a ``concurrent.futures.Future`` chained to an asyncio
one and a wake-up of the loop (a write to its self-pipe) for each result. At a thousand images
a second on two cores that hand-off is a tenth of the loop's CPU. Here a result is appended to a
list and the loop is woken only when that list was empty, so one wake-up delivers every result
that finished meanwhile.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")
_Job = tuple["asyncio.Future[Any]", Callable[..., Any], tuple[Any, ...]]


class Offload:
    """``threads`` threads running the calls that :meth:`run` queues, in order."""

    def __init__(self, threads: int, name: str, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._done: list[tuple[asyncio.Future[Any], Any, BaseException | None]] = []
        self._done_lock = threading.Lock()
        self._closing = False
        self._threads = [
            threading.Thread(target=self._serve, name=f"{name}_{i}", daemon=True)
            for i in range(threads)
        ]
        for thread in self._threads:
            thread.start()

    def run(self, fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        """``fn(*args)`` on a pool thread; await the returned future for its result."""
        future: asyncio.Future[T] = self._loop.create_future()
        self._jobs.put((future, fn, args))
        return future

    def shutdown(self) -> None:
        """Wait for the calls that have started; drop those that have not (their awaiting
        tasks have been cancelled by then)."""
        self._closing = True
        for _ in self._threads:
            self._jobs.put(None)
        for thread in self._threads:
            thread.join()

    def _serve(self) -> None:
        while (job := self._jobs.get()) is not None:
            if self._closing:
                continue
            future, fn, args = job
            try:
                done = (future, fn(*args), None)
            except BaseException as exc:  # handed to the awaiting task, which raises it
                done = (future, None, exc)
            with self._done_lock:
                self._done.append(done)
                first = len(self._done) == 1
            if first:
                try:
                    self._loop.call_soon_threadsafe(self._deliver)
                except RuntimeError:  # the loop is closed: nobody awaits this any more
                    pass
            del done, job, future, fn, args

    def _deliver(self) -> None:
        with self._done_lock:
            done, self._done = self._done, []
        for future, result, exc in done:
            if future.done():  # cancelled: the run stopped waiting for it
                continue
            if exc is None:
                future.set_result(result)
            else:
                future.set_exception(exc)
