"""The image cache: one file per URL, named as Molmo's downloader names it, written by rename.

Molmo stores ``sha256(url).hexdigest()`` with no extension in one flat directory, so a cache
filled here is a Molmo image cache and the other way round. Temporary files are hidden names
(``.<name>.<token>.tmp``) that Molmo never looks up; a file under a real name is always whole.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import random
from pathlib import Path

_TMP_SUFFIX = ".tmp"
# Temporary names need only be distinct (one run writes a URL once, under the cache lock), not
# secret: a seeded generator costs no system call per file.
_TOKENS = random.Random(os.urandom(16))


def cache_name(url: str) -> str:
    """The file name of ``url``'s image in the cache (Molmo's: hex sha256 of the URL)."""
    return hashlib.sha256(url.encode("utf-8")).hexdigest()


class ImageCache:
    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)
        self._prefix = os.path.join(os.fspath(directory), "")

    def path(self, url: str) -> Path:
        return self.directory / cache_name(url)

    def size(self, url: str) -> int | None:
        """Bytes of ``url``'s cached file, or ``None`` if there is none."""
        try:
            return os.stat(self._prefix + cache_name(url)).st_size
        except FileNotFoundError:
            return None

    def read(self, url: str) -> bytes | None:
        try:
            with open(self._prefix + cache_name(url), "rb") as f:
                return f.read()
        except FileNotFoundError:
            return None

    def write(self, url: str, body: bytes) -> None:
        """Store ``body`` under ``url``'s name: all of it or, if interrupted, nothing."""
        name = cache_name(url)
        final = self._prefix + name
        tmp = f"{self._prefix}.{name}.{_TOKENS.getrandbits(32):08x}{_TMP_SUFFIX}"
        try:
            with open(tmp, "wb") as f:
                f.write(body)
            os.replace(tmp, final)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise

    def discard(self, url: str) -> None:
        """Remove a file that failed its check (e.g. an error text an older tool cached)."""
        self.path(url).unlink(missing_ok=True)

    def remove_stale_temporaries(self) -> int:
        """Delete temporaries a killed run left; only safe while holding the cache lock."""
        removed = 0
        for entry in os.scandir(self.directory):
            if entry.name.startswith(".") and entry.name.endswith(_TMP_SUFFIX):
                name = entry.name[1:].split(".", 1)[0]
                if len(name) == 64:
                    Path(entry.path).unlink(missing_ok=True)
                    removed += 1
        return removed
