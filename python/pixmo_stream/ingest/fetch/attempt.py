"""One HTTP attempt at one URL, under a wall-clock deadline that covers the body too.

aiohttp's ``ClientTimeout(sock_read=...)`` restarts on every chunk, so a server that drips a
byte a second never trips it, and ``total`` only bounds what is read inside it. The whole
attempt (connect, headers, every body chunk) therefore runs inside ``asyncio.timeout``.
"""

from __future__ import annotations

import asyncio
import dataclasses

import aiohttp

from .backoff import parse_retry_after
from .options import FetchOptions
from .outcome import Outcome

_CHUNK = 256 * 1024


@dataclasses.dataclass(frozen=True)
class AttemptResult:
    """A body (``outcome is None``) or a failure class, with what the server said."""

    outcome: Outcome | None
    status: int | None = None
    detail: str = ""
    body: bytes | None = None
    content_type: str = ""
    retry_after: float | None = None


def opt_out_directive(headers: list[str], directives: tuple[str, ...], agent: str) -> str | None:
    """The first ``X-Robots-Tag`` directive in ``directives`` that applies to us, if any.

    A value may name a crawler (``otherbot: noai``); such a value applies only when it names our
    user agent's product token, as img2dataset reads it.
    """
    wanted = {d.lower() for d in directives}
    token = agent.split("/", 1)[0].strip().lower()
    for value in headers:
        for part in value.split(","):
            part = part.strip().lower()
            if ":" in part:
                bot, _, part = part.partition(":")
                if bot.strip() != token:
                    continue
            for directive in part.split():
                if directive in wanted:
                    return directive
    return None


async def attempt(session: aiohttp.ClientSession, url: str, opts: FetchOptions) -> AttemptResult:
    reading_body = False
    status: int | None = None
    try:
        async with asyncio.timeout(opts.request_timeout):
            # aiohttp raises once its count of redirects *reaches* max_redirects (and reads 0
            # as no limit), so the 10th redirect would fail; ours is a limit on how many are
            # followed: one more than it is what must fail.
            async with session.get(
                url, allow_redirects=True, max_redirects=opts.max_redirects + 1
            ) as resp:
                status = resp.status
                early = _refuse_by_headers(resp, opts)
                if early is not None:
                    return early
                reading_body = True
                body = await _read_capped(resp, opts.max_bytes)
                if body is None:
                    return AttemptResult(
                        Outcome.TOO_LARGE, status, f"body exceeds {opts.max_bytes} bytes"
                    )
                return AttemptResult(None, status, body=body, content_type=resp.content_type)
    except TimeoutError:
        where = "reading the body" if reading_body else "waiting for the response"
        detail = f"no complete response within {opts.request_timeout:g} s ({where})"
        return AttemptResult(Outcome.TIMEOUT, status, detail)
    except aiohttp.TooManyRedirects as exc:
        return AttemptResult(
            Outcome.REDIRECT_LOOP,
            status,
            f"more than {opts.max_redirects} "
            f"redirects (last {exc.history[-1].url if exc.history else url})",
        )
    except (aiohttp.InvalidURL, aiohttp.NonHttpUrlClientError) as exc:
        return AttemptResult(Outcome.INVALID_URL, status, f"{type(exc).__name__}: {exc}")
    except aiohttp.ClientPayloadError as exc:
        return AttemptResult(Outcome.TRUNCATED, status, f"body broken off: {exc}")
    except aiohttp.ClientResponseError as exc:
        return AttemptResult(Outcome.SERVER_ERROR, status, f"bad response: {exc.message}")
    except (aiohttp.ClientError, OSError, ValueError) as exc:
        outcome = Outcome.TRUNCATED if reading_body else Outcome.CONNECT_ERROR
        return AttemptResult(outcome, status, f"{type(exc).__name__}: {exc}")


def _refuse_by_headers(resp: aiohttp.ClientResponse, opts: FetchOptions) -> AttemptResult | None:
    """A failure known from the status line and headers alone, so the body is never read."""
    status = resp.status
    retry_after = parse_retry_after(resp.headers.get("Retry-After"))
    if status in (404, 410):
        return AttemptResult(Outcome.NOT_FOUND, status, f"HTTP {status}")
    if status == 429:
        return AttemptResult(Outcome.THROTTLED, status, "HTTP 429", retry_after=retry_after)
    if status == 408:
        return AttemptResult(Outcome.TIMEOUT, status, "HTTP 408 (the server timed out)")
    if status >= 500:
        return AttemptResult(
            Outcome.SERVER_ERROR, status, f"HTTP {status}", retry_after=retry_after
        )
    if status >= 400:
        return AttemptResult(Outcome.CLIENT_ERROR, status, f"HTTP {status}")
    if status >= 300 or status < 200:
        return AttemptResult(
            Outcome.CLIENT_ERROR, status, f"HTTP {status} without a usable Location"
        )
    if opts.opt_out_directives:
        directive = opt_out_directive(
            resp.headers.getall("X-Robots-Tag", []), opts.opt_out_directives, opts.user_agent
        )
        if directive is not None:
            return AttemptResult(Outcome.OPTED_OUT, status, f"X-Robots-Tag: {directive}")
    length = resp.content_length
    if length is not None and length > opts.max_bytes:
        return AttemptResult(
            Outcome.TOO_LARGE, status, f"Content-Length {length} exceeds {opts.max_bytes} bytes"
        )
    return None


async def _read_capped(resp: aiohttp.ClientResponse, max_bytes: int) -> bytes | None:
    """The whole body, or ``None`` as soon as it passes ``max_bytes`` (the rest is not read)."""
    chunks = []
    size = 0
    async for chunk in resp.content.iter_chunked(_CHUNK):
        size += len(chunk)
        if size > max_bytes:
            return None
        chunks.append(chunk)
    return b"".join(chunks)
