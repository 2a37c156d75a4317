"""Injected misbehaviour (``Fault``) and the counters every request updates."""

from __future__ import annotations

import asyncio
import collections
import fnmatch
import threading
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Fault:
    """One injected misbehaviour, for the next ``count`` requests whose ``bucket/key`` matches
    ``match`` (and whose method is in ``methods``, when given).

    ``kind``: ``"503"`` (SlowDown), ``"429"``, ``"500"`` (InternalError), ``"drop"`` (headers and
    ``fraction`` of the body, then the connection is cut; requests without a body are cut before
    any response), ``"close"`` (cut before any response), ``"stall"`` (sleep ``seconds`` before the
    response, or after ``fraction`` of the body when ``fraction`` is given).
    """

    kind: str
    count: int = 1
    match: str = "*"
    methods: tuple[str, ...] = ()
    seconds: float = 1.0
    fraction: float | None = None
    hits: int = field(default=0, compare=False)

    KINDS = ("503", "429", "500", "drop", "close", "stall")

    def __post_init__(self) -> None:
        self.kind = str(self.kind)
        if self.kind not in self.KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; choose one of {self.KINDS}")
        self.methods = tuple(m.upper() for m in self.methods)

    def applies(self, method: str, name: str) -> bool:
        return (
            self.count > 0
            and (not self.methods or method in self.methods)
            and fnmatch.fnmatchcase(name, self.match)
        )


class Gate:
    """Holds every request whose ``bucket/key`` matches ``match`` until ``release()``: a store
    that has stalled, for as long as a test needs, with no clock involved. ``arrived`` is set
    once a request waits at the gate."""

    def __init__(self, match: str) -> None:
        self.match = match
        self.arrived = threading.Event()
        self.opened = threading.Event()

    def release(self) -> None:
        self.opened.set()

    async def wait(self) -> None:
        self.arrived.set()
        while not self.opened.is_set():
            await asyncio.sleep(0.005)


def _fault_json(f: Fault) -> dict[str, Any]:
    return {
        "kind": f.kind,
        "count": f.count,
        "match": f.match,
        "methods": list(f.methods),
        "seconds": f.seconds,
        "fraction": f.fraction,
        "hits": f.hits,
    }


class Instrumentation:
    """Counters, the request log, faults and forbidden globs of ``S3Server`` (mixed into it;
    it sets ``_lock``, ``_faults``, ``_gates``, ``forbidden``, ``_log`` and ``latency``)."""

    def reset(self) -> None:
        """Zero every counter and clear the request log (faults stay)."""
        with self._lock:
            self.requests = 0
            self.bytes_sent = 0
            self.bytes_received = 0
            self.ops: collections.Counter[str] = collections.Counter()
            self.statuses: collections.Counter[int] = collections.Counter()
            self.keys: dict[str, dict[str, int]] = {}
            self._log.clear()

    def inject(
        self,
        kind: str,
        count: int = 1,
        match: str = "*",
        *,
        methods: tuple[str, ...] | list[str] = (),
        seconds: float = 1.0,
        fraction: float | None = None,
    ) -> Fault:
        """Make the next ``count`` matching requests misbehave (see ``Fault``)."""
        fault = Fault(kind, count, match, tuple(methods), seconds, fraction)
        with self._lock:
            self._faults.append(fault)
        return fault

    def gate(self, match: str) -> Gate:
        """Hold the requests for ``match`` (a glob of ``bucket/key``) until the gate's
        ``release()``; ``clear_faults`` releases and removes every gate."""
        gate = Gate(match)
        with self._lock:
            self._gates.append(gate)
        return gate

    def _gate_of(self, name: str) -> Gate | None:
        with self._lock:
            return next(
                (
                    g
                    for g in self._gates
                    if not g.opened.is_set() and fnmatch.fnmatchcase(name, g.match)
                ),
                None,
            )

    def forbid(self, pattern: str) -> None:
        """Answer 403 AccessDenied to every request whose ``bucket/key`` matches ``pattern``."""
        with self._lock:
            self.forbidden.append(pattern)

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()
            self.forbidden.clear()
            for gate in self._gates:
                gate.release()
            self._gates.clear()

    @property
    def faults(self) -> list[Fault]:
        with self._lock:
            return [f for f in self._faults if f.count > 0]

    def key_stats(self, name: str) -> dict[str, int]:
        """``{"requests": n, "bytes": n}`` for ``bucket/key``."""
        with self._lock:
            return dict(self.keys.get(name, {"requests": 0, "bytes": 0}))

    def stats(self, log: bool = False) -> dict[str, Any]:
        with self._lock:
            out: dict[str, Any] = {
                "requests": self.requests,
                "bytes_sent": self.bytes_sent,
                "bytes_received": self.bytes_received,
                "ops": dict(self.ops),
                "statuses": {str(k): v for k, v in self.statuses.items()},
                "keys": {k: dict(v) for k, v in self.keys.items()},
                "latency": self.latency,
                "faults": [_fault_json(f) for f in self._faults if f.count > 0],
                "forbidden": list(self.forbidden),
            }
            if log:
                out["log"] = list(self._log)
            return out

    def configure(self, doc: dict[str, Any]) -> None:
        """Apply an ``/_admin/faults`` document: ``faults``, ``forbidden``, ``latency``,
        ``clear`` (drop the faults and forbidden globs set before)."""
        if doc.get("clear"):
            self.clear_faults()
        for f in doc.get("faults", []):
            self.inject(
                str(f["kind"]),
                int(f.get("count", 1)),
                str(f.get("match", "*")),
                methods=tuple(f.get("methods", ())),
                seconds=float(f.get("seconds", 1.0)),
                fraction=None if f.get("fraction") is None else float(f["fraction"]),
            )
        for pattern in doc.get("forbidden", []):
            self.forbid(str(pattern))
        if "latency" in doc:
            self.latency = float(doc["latency"])
        if "min_part_size" in doc:
            self.min_part_size = int(doc["min_part_size"])

    def _count_sent(self, name: str, n: int) -> None:
        with self._lock:
            self.bytes_sent += n
            self.keys.setdefault(name, {"requests": 0, "bytes": 0})["bytes"] += n

    def _take_fault(self, method: str, name: str) -> Fault | None:
        with self._lock:
            for f in self._faults:
                if f.applies(method, name):
                    f.count -= 1
                    f.hits += 1
                    return f
        return None
