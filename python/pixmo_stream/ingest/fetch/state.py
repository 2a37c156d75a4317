"""Per-URL outcomes of past runs, kept in the cache directory so a run can resume.

Stored in SQLite (stdlib) in WAL mode rather than an append-only log: a re-run looks up one URL
at a time without loading every past record into memory, a newer outcome replaces an older one
in place (no compaction), and a committed transaction survives ``kill -9`` of the process (the
WAL is in the OS page cache; only a machine crash can drop the last commits, and then the image
files, written by rename, are checked again). Commits are batched, since one per URL would cost
more than the download; a running fetch makes them (and its look-ups) on a thread of its own, so
the event loop never waits on SQLite.
"""

from __future__ import annotations

import dataclasses
import fcntl
import os
import sqlite3
import threading
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType
from typing import Any

from .errors import FetchError
from .outcome import Outcome

STATE_FILE = ".pixmo-fetch.sqlite"
LOCK_FILE = ".pixmo-fetch.lock"
COMMIT_EVERY = 256
FLUSH_SECONDS = 0.5
_LOOKUP_CHUNK = 500  # URLs per look-up query (under SQLite's oldest limit of 999 parameters)
_COLUMNS = "url, outcome, status, detail, sha256, size, attempts, updated"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS url_state (
    url TEXT PRIMARY KEY,
    outcome TEXT NOT NULL,
    status INTEGER,
    detail TEXT NOT NULL,
    sha256 TEXT,
    size INTEGER,
    attempts INTEGER NOT NULL,
    updated REAL NOT NULL
)
"""


@dataclasses.dataclass(frozen=True)
class UrlRecord:
    """The last outcome of one URL: ``sha256`` and ``size`` describe the cached bytes."""

    url: str
    outcome: Outcome
    status: int | None
    detail: str
    sha256: str | None
    size: int | None
    attempts: int
    updated: float


class FetchState:
    """The per-URL state of a cache directory: ``FetchState(cache_dir).get(url)``.

    Opening it read-only is safe while a fetch runs; ``writable=True`` (what a fetch run uses)
    also takes an exclusive lock, so two runs cannot fill one cache at once. Its methods may be
    called from any thread: :meth:`record` only queues (it never waits on the database), and the
    connection is used by one thread at a time.
    """

    def __init__(self, cache_dir: str | os.PathLike[str], *, writable: bool = False) -> None:
        self.cache_dir = Path(cache_dir)
        self.path = self.cache_dir / STATE_FILE
        self._lock_fd: int | None = None
        self._pending: dict[str, tuple[Any, ...]] = {}
        # Rows taken from ``_pending`` by a commit in progress: still visible to get().
        self._committing: dict[str, tuple[Any, ...]] = {}
        self._pending_lock = threading.Lock()
        self._db_lock = threading.Lock()
        if writable:
            self._lock()
        elif not self.path.exists():
            raise FileNotFoundError(f"{self.path}: no fetch state here (has a fetch run?)")
        try:
            uri = self.path.as_uri() + ("" if writable else "?mode=ro")
            self._db = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
            if writable:
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=NORMAL")
                self._db.execute(_SCHEMA)
            self._db.execute("SELECT count(*) FROM url_state").fetchone()
        except sqlite3.Error as exc:
            self._unlock()
            raise FetchError(
                f"{self.path}: cannot use the fetch state: {exc}", path=str(self.path)
            ) from exc

    def _lock(self) -> None:
        lock_path = self.cache_dir / LOCK_FILE
        try:
            self._lock_fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._unlock()
            raise FetchError(
                f"{self.cache_dir}: another fetch is writing to this cache", path=str(lock_path)
            ) from None
        except OSError as exc:
            self._unlock()
            raise FetchError(
                f"{lock_path}: cannot lock the cache: {exc}", path=str(lock_path)
            ) from exc

    def _unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def get(self, url: str) -> UrlRecord | None:
        """The last recorded outcome for ``url``, or ``None`` if no run has finished it."""
        with self._pending_lock:
            row: tuple[Any, ...] | None = self._pending.get(url) or self._committing.get(url)
        if row is None:
            with self._db_lock:
                row = self._db.execute(
                    f"SELECT {_COLUMNS} FROM url_state WHERE url = ?", (url,)
                ).fetchone()
        return None if row is None else _to_record(row)

    def get_many(self, urls: Iterable[str]) -> dict[str, UrlRecord]:
        """The records of those of ``urls`` that have one: a query per 500 URLs, not per URL."""
        urls = list(urls)
        rows: dict[str, tuple[Any, ...]] = {}
        with self._db_lock:
            for start in range(0, len(urls), _LOOKUP_CHUNK):
                chunk = urls[start : start + _LOOKUP_CHUNK]
                marks = ",".join("?" * len(chunk))
                query = f"SELECT {_COLUMNS} FROM url_state WHERE url IN ({marks})"
                rows.update((row[0], row) for row in self._db.execute(query, chunk))
        with self._pending_lock:
            for url in urls:
                row = self._pending.get(url) or self._committing.get(url)
                if row is not None:
                    rows[url] = row
        return {url: _to_record(row) for url, row in rows.items()}

    def counts(self) -> dict[str, int]:
        """How many URLs the state holds per outcome."""
        self.flush()
        with self._db_lock:
            rows = self._db.execute("SELECT outcome, count(*) FROM url_state GROUP BY outcome")
            return dict(rows.fetchall())

    def __len__(self) -> int:
        self.flush()
        with self._db_lock:
            return int(self._db.execute("SELECT count(*) FROM url_state").fetchone()[0])

    def record(self, rec: UrlRecord, *, commit_when_full: bool = True) -> int:
        """Queue ``rec``; it is committed by :meth:`flush` or, with ``commit_when_full``, here
        once 256 records are queued (a running fetch passes ``False`` and commits on its state
        thread every 256 records or half a second). Returns how many records are queued."""
        row = (
            rec.url,
            rec.outcome.value,
            rec.status,
            rec.detail,
            rec.sha256,
            rec.size,
            rec.attempts,
            rec.updated,
        )
        with self._pending_lock:
            self._pending[rec.url] = row
            queued = len(self._pending)
        if commit_when_full and queued >= COMMIT_EVERY:
            self.flush()
        return queued

    def flush(self) -> None:
        """Commit everything recorded so far (in one transaction)."""
        with self._db_lock:
            with self._pending_lock:
                if not self._pending:
                    return
                rows = self._committing = self._pending
                self._pending = {}
            try:
                with self._db:
                    self._db.execute("BEGIN")
                    self._db.executemany(
                        "INSERT OR REPLACE INTO url_state VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                        rows.values(),
                    )
            except BaseException:
                with self._pending_lock:  # not written: keep them queued
                    self._pending = {**rows, **self._pending}
                raise
            finally:
                with self._pending_lock:
                    self._committing = {}

    def close(self) -> None:
        try:
            self.flush()
        finally:
            self._db.close()
            self._unlock()

    def __enter__(self) -> FetchState:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _to_record(row: tuple[Any, ...]) -> UrlRecord:
    return UrlRecord(row[0], Outcome(row[1]), *row[2:])
