"""Per-host politeness: a concurrency limit, a start rate, and a slow-down for hosts that
throttle, which touches only that host."""

from __future__ import annotations

import asyncio
import time
import urllib.parse

# A throttling host's interval between request starts doubles per throttle, from this floor
# up to this ceiling; each success then shortens it by _RECOVERY until it is back to normal.
_THROTTLED_FLOOR = 0.05
_THROTTLED_CEILING = 10.0
_RECOVERY = 0.9


def host_key(url: str) -> str:
    """The host (and port) a URL's requests count against."""
    parts = urllib.parse.urlsplit(url)
    host = (parts.hostname or "").lower()
    return f"{host}:{parts.port}" if parts.port else host


class HostGate:
    """Admits requests to one host: at most ``per_host`` at once, starts spaced by the rate."""

    def __init__(self, per_host: int, rate: float | None) -> None:
        self._slots = asyncio.Semaphore(per_host)
        self._base_interval = 1.0 / rate if rate else 0.0
        self._interval = self._base_interval
        self._next_start = 0.0
        self._paused_until = 0.0
        self.throttles = 0
        self.streak = 0
        """Throttles since the host last served a request: the exponent of its pause."""

    async def __aenter__(self) -> HostGate:
        await self._slots.acquire()
        try:
            while True:
                now = time.monotonic()
                start = max(self._next_start, self._paused_until)
                if start <= now:
                    self._next_start = now + self._interval
                    return self
                await asyncio.sleep(start - now)
        except BaseException:
            self._slots.release()
            raise

    async def __aexit__(self, *exc: object) -> None:
        self._slots.release()

    def throttled(self, pause: float) -> None:
        """The host said 429/503: hold all its requests for ``pause`` s and slow its rate."""
        self.throttles += 1
        self.streak += 1
        now = time.monotonic()
        # Answers to one burst of requests arrive together: slow down once per pause, not
        # once per answer.
        if now >= self._paused_until:
            self._interval = min(_THROTTLED_CEILING, max(_THROTTLED_FLOOR, self._interval * 2))
        self._paused_until = max(self._paused_until, now + pause)

    def succeeded(self) -> None:
        self.streak = 0
        if self._interval > self._base_interval:
            self._interval = max(self._base_interval, self._interval * _RECOVERY)
            if self._interval < _THROTTLED_FLOOR:
                self._interval = self._base_interval


class HostGates:
    """One :class:`HostGate` per host, made on first use."""

    def __init__(self, per_host: int, rate: float | None) -> None:
        self._per_host = per_host
        self._rate = rate
        self._gates: dict[str, HostGate] = {}

    def __getitem__(self, url: str) -> HostGate:
        key = host_key(url)
        gate = self._gates.get(key)
        if gate is None:
            gate = self._gates[key] = HostGate(self._per_host, self._rate)
        return gate

    def throttled_hosts(self) -> dict[str, int]:
        return {key: gate.throttles for key, gate in self._gates.items() if gate.throttles}
