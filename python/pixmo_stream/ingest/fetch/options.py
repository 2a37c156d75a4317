"""The knobs of a fetch run, checked once when built."""

from __future__ import annotations

import dataclasses
import os
from typing import Literal

ShaPolicy = Literal["strict", "flag", "off"]
SHA_POLICIES: tuple[ShaPolicy, ...] = ("strict", "flag", "off")

DEFAULT_USER_AGENT = "pixmo-stream-fetch/0.1 (research image dataset download)"


@dataclasses.dataclass(frozen=True)
class FetchOptions:
    """How a fetch run behaves; every field has a default that suits PixMo.

    Times are seconds. ``request_timeout`` is a wall-clock deadline for one attempt covering
    connect, headers and the whole body, so a server that drips bytes cannot hold a request
    longer than that. ``deadline`` bounds the whole run (``None``: no bound).
    """

    concurrency: int = 256
    """Requests in flight at once, over all hosts."""
    per_host: int = 16
    """Requests in flight at once to one host."""
    per_host_rate: float | None = None
    """Most requests started per second to one host (``None``: no limit until it throttles)."""
    request_timeout: float = 20.0
    connect_timeout: float = 10.0
    deadline: float | None = None
    max_bytes: int = 32 * 1024 * 1024
    """Bodies larger than this are refused (``too_large``), checked before and while reading."""
    retries: int = 3
    """Extra attempts after the first for connect errors, truncated bodies, 408, 429 and 5xx.
    A request that ran out its own ``request_timeout`` is not retried in the same run (it would
    likely wait as long again) but is retried by the next run."""
    backoff_base: float = 0.5
    backoff_max: float = 30.0
    retry_after_cap: float = 60.0
    """A ``Retry-After`` up to this is waited out; a longer one defers the URL to a later run."""
    max_redirects: int = 10
    """Redirects followed for one request; a chain of more is ``redirect_loop``."""
    sha_policy: ShaPolicy = "flag"
    """``strict``: a sha256 mismatch is a failure, not cached. ``flag``: an image that decodes
    but whose hash differs is kept and reported as ``sha_flagged``. ``off``: no check."""
    decode: bool = True
    """Fully decode each image (in a thread pool) to catch truncated or corrupt files."""
    decode_threads: int = dataclasses.field(default_factory=lambda: min(8, os.cpu_count() or 1))
    """Threads that check (decode) images and write files."""
    opt_out_directives: tuple[str, ...] = ("noai", "noimageai")
    """``X-Robots-Tag`` directives that mean "do not use for AI": such a response is not read
    (``opted_out``). Checked on the headers, before the body; ``()`` turns the check off."""
    user_agent: str = DEFAULT_USER_AGENT
    retry_permanent: bool = False
    """Also ask again for URLs a previous run recorded as permanent failures (404, bad content)."""

    def __post_init__(self) -> None:
        positive_ints = ("concurrency", "per_host", "decode_threads")
        for name in positive_ints:
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(
                    f"FetchOptions.{name} must be an integer >= 1, got {getattr(self, name)!r}"
                )
        for name in ("retries", "max_redirects", "max_bytes"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 0:
                raise ValueError(
                    f"FetchOptions.{name} must be an integer >= 0, got {getattr(self, name)!r}"
                )
        for name in ("request_timeout", "connect_timeout", "retry_after_cap", "backoff_max"):
            if not getattr(self, name) > 0:
                raise ValueError(f"FetchOptions.{name} must be > 0, got {getattr(self, name)!r}")
        if not self.backoff_base >= 0:
            raise ValueError(f"FetchOptions.backoff_base must be >= 0, got {self.backoff_base!r}")
        if self.deadline is not None and not self.deadline > 0:
            raise ValueError(f"FetchOptions.deadline must be > 0 or None, got {self.deadline!r}")
        if self.per_host_rate is not None and not self.per_host_rate > 0:
            raise ValueError(
                f"FetchOptions.per_host_rate must be > 0 or None, got {self.per_host_rate!r}"
            )
        if isinstance(self.opt_out_directives, str):
            raise ValueError(
                "FetchOptions.opt_out_directives must be a tuple of strings, not a str"
            )
        if self.sha_policy not in SHA_POLICIES:
            raise ValueError(
                f"FetchOptions.sha_policy must be one of {SHA_POLICIES}, got {self.sha_policy!r}"
            )
