"""Where a record's image bytes come from: a local folder, the input itself, or nowhere.

A source is a small picklable object (convert's worker processes each get a copy) whose
``read(ref)`` returns the bytes for an `ImageRef`, or raises `MissingImage`.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable
from urllib.parse import unquote, urlsplit

from pixmo_stream._native import PixmoError

Naming = Literal["url-sha256", "filename"]


class MissingImage(PixmoError):
    """No bytes for this image (no such file, an empty inline value). ``cause`` is what the
    conversion report counts it as: ``missing``, or why its download failed (``not_found``,
    ``timeout``, ... as `pixmo_stream.ingest.fetch.Outcome` names them)."""

    def __init__(self, message: str, cause: str = "missing") -> None:
        super().__init__(message)
        self.cause = cause

    def __reduce__(self) -> tuple[type[MissingImage], tuple[str, str]]:
        return type(self), (str(self), self.cause)


@dataclass(frozen=True)
class ImageRef:
    """What names one image: its URL (or id), a file name where the input has one, and the
    bytes themselves for inputs that carry them inline."""

    url: str | None = None
    file_name: str | None = None
    data: bytes | None = None


def molmo_cache_name(url: str) -> str:
    """The file name Molmo's downloader gives an image: the hex sha256 of its URL (UTF-8),
    with no extension. An existing Molmo image cache is read as it is."""
    return hashlib.sha256(url.encode("utf-8")).hexdigest()


def url_file_name(url: str) -> str:
    """The last path component of a URL, percent-decoded: ``https://h/a/b%20c.jpg`` is
    ``b c.jpg``."""
    return unquote(os.path.basename(urlsplit(url).path))


@dataclass(frozen=True)
class FolderImages:
    """Images in a local folder, named as Molmo's cache names them (``url-sha256``) or by
    file name (``filename``: the input's file-name column, else the URL's last component)."""

    root: str
    naming: Naming = "url-sha256"

    def __post_init__(self) -> None:
        if self.naming not in ("url-sha256", "filename"):
            raise ValueError(f"naming must be 'url-sha256' or 'filename', got {self.naming!r}")

    def path_of(self, ref: ImageRef) -> str:
        if self.naming == "url-sha256":
            if not ref.url:
                raise MissingImage("no image URL to name the file by")
            return os.path.join(self.root, molmo_cache_name(ref.url))
        name = ref.file_name or (url_file_name(ref.url) if ref.url else "")
        if not name or os.path.basename(name) in ("", ".", ".."):
            raise MissingImage(f"no file name for image {ref.url!r}")
        path = os.path.normpath(os.path.join(self.root, name))
        root = os.path.normpath(self.root)
        if os.path.commonpath([root, path]) != root:  # "../../etc/passwd" in an input
            raise MissingImage(f"file name {name!r} points outside {self.root}")
        return path

    def read(self, ref: ImageRef) -> bytes:
        path = self.path_of(ref)
        try:
            with open(path, "rb") as f:
                return f.read()
        except FileNotFoundError:
            raise MissingImage(f"no file {path}") from None
        except IsADirectoryError:
            raise MissingImage(f"{path} is a directory") from None
        except OSError as e:  # permissions, I/O errors: this image is lost, not the run
            raise MissingImage(f"cannot read {path}: {e.strerror or e}") from None


@dataclass(frozen=True)
class InlineImages:
    """Bytes carried by the input (pixmo-docs' ``image`` struct, WebDataset members)."""

    def read(self, ref: ImageRef) -> bytes:
        if not ref.data:
            raise MissingImage("the input has no image bytes for this row")
        return ref.data


@dataclass(frozen=True)
class NoImages:
    """Metadata only (pixmo-clocks without its renderings): records have no image."""

    def read(self, ref: ImageRef) -> bytes:
        raise MissingImage("no image source")


@runtime_checkable
class ImageSource(Protocol):
    """What convert reads images through. Any picklable object with this method fits (the
    HTTP fetcher's source, for one); ``read`` raises `MissingImage` for an image it cannot
    provide, and `convert` counts that under the error's ``cause`` (``missing``)."""

    def read(self, ref: ImageRef) -> bytes: ...
