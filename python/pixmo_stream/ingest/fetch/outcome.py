"""What happened to one URL: the outcome classes a fetch run reports and stores per URL."""

from __future__ import annotations

import enum


class Outcome(enum.StrEnum):
    """The final class of one URL in one run; the value is what reports and the state store."""

    OK = "ok"
    SHA_FLAGGED = "sha_flagged"
    """Kept: the image decodes, but its sha256 differs from the dataset's (policy ``flag``)."""
    NOT_FOUND = "not_found"
    CLIENT_ERROR = "client_error"
    """Any other 4xx (401, 403, 451, ...): the server refuses this URL, retrying will not help."""
    TIMEOUT = "timeout"
    THROTTLED = "throttled"
    DEFERRED = "deferred"
    """The server asked us (``Retry-After``) to wait longer than the cap: left for a later run."""
    BAD_CONTENT = "bad_content"
    SHA_MISMATCH = "sha_mismatch"
    TOO_LARGE = "too_large"
    CONNECT_ERROR = "connect_error"
    TRUNCATED = "truncated"
    """The body ended early: a reset mid-body, or fewer bytes than ``Content-Length`` said."""
    REDIRECT_LOOP = "redirect_loop"
    SERVER_ERROR = "server_error"
    OPTED_OUT = "opted_out"
    INVALID_URL = "invalid_url"
    NOT_ATTEMPTED = "not_attempted"
    """The overall deadline or an interrupt ended the run before this URL got an answer."""

    @property
    def cached(self) -> bool:
        """True when the image is in the cache."""
        return self in _CACHED

    @property
    def retryable(self) -> bool:
        """True when a later run should ask again (the failure may be temporary)."""
        return self in _RETRYABLE


_CACHED = frozenset({Outcome.OK, Outcome.SHA_FLAGGED})
_RETRYABLE = frozenset(
    {
        Outcome.TIMEOUT,
        Outcome.THROTTLED,
        Outcome.DEFERRED,
        Outcome.CONNECT_ERROR,
        Outcome.TRUNCATED,
        Outcome.SERVER_ERROR,
        Outcome.NOT_ATTEMPTED,
    }
)
