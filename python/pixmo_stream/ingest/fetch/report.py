"""The summary of one fetch run: counts by outcome over every distinct URL it was given."""

from __future__ import annotations

import dataclasses
import json
import os
from collections import Counter
from pathlib import Path
from typing import Any

from .outcome import Outcome

REPORT_FILE = ".pixmo-fetch-report.json"
"""Where a run writes its report, in the cache directory (unless told otherwise)."""


@dataclasses.dataclass
class FetchReport:
    """Counts by outcome (every distinct input URL has exactly one), and how the run went.

    ``reused`` counts URLs answered from the cache or the state of a previous run without a
    request; ``requests`` counts HTTP attempts, retries included.
    """

    total: int = 0
    counts: Counter[str] = dataclasses.field(default_factory=Counter)
    reused: int = 0
    requests: int = 0
    bytes_downloaded: int = 0
    elapsed_s: float = 0.0
    interrupted: bool = False
    deadline_reached: bool = False
    throttled_hosts: dict[str, int] = dataclasses.field(default_factory=dict)

    @property
    def cached(self) -> int:
        """URLs whose image is now in the cache."""
        return sum(n for name, n in self.counts.items() if Outcome(name).cached)

    @property
    def success_rate(self) -> float:
        return self.cached / self.total if self.total else 1.0

    def count(self, outcome: Outcome | str) -> int:
        return self.counts.get(str(outcome), 0)

    def to_dict(self) -> dict[str, Any]:
        return {
            "total": self.total,
            "cached": self.cached,
            "success_rate": round(self.success_rate, 6),
            "outcomes": {o.value: self.counts.get(o.value, 0) for o in Outcome},
            "reused": self.reused,
            "requests": self.requests,
            "bytes_downloaded": self.bytes_downloaded,
            "elapsed_s": round(self.elapsed_s, 3),
            "images_per_s": round(self._fetched_per_s(), 1),
            "interrupted": self.interrupted,
            "deadline_reached": self.deadline_reached,
            "throttled_hosts": dict(self.throttled_hosts),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FetchReport:
        """The report `to_dict` gave (``convert-report.json`` holds one under ``fetch``)."""
        return cls(
            total=d["total"],
            counts=Counter({k: v for k, v in d["outcomes"].items() if v}),
            reused=d["reused"],
            requests=d["requests"],
            bytes_downloaded=d["bytes_downloaded"],
            elapsed_s=d["elapsed_s"],
            interrupted=d["interrupted"],
            deadline_reached=d["deadline_reached"],
            throttled_hosts=dict(d["throttled_hosts"]),
        )

    def write(self, path: str | os.PathLike[str]) -> None:
        """Writes the JSON report (what ``pixmo-stream fetch`` writes) to ``path``."""
        Path(path).write_text(self.to_json() + "\n", encoding="utf-8")

    def format(self) -> str:
        """A short table for people: outcomes that occurred, then the totals."""
        lines = [f"{'outcome':<15} {'urls':>10}"]
        for outcome in Outcome:
            n = self.counts.get(outcome.value, 0)
            if n:
                lines.append(f"{outcome.value:<15} {n:>10,}")
        lines.append(f"{'total':<15} {self.total:>10,}")
        lines.append(
            f"{self.cached:,} of {self.total:,} images cached ({self.success_rate:.1%}); "
            f"{self.reused:,} reused, {self.requests:,} requests, "
            f"{self.bytes_downloaded / 1e6:,.1f} MB in {self.elapsed_s:.1f} s"
        )
        if self.deadline_reached:
            lines.append("stopped at the overall deadline; run again to fetch the rest")
        if self.interrupted:
            lines.append("interrupted; run again to fetch the rest")
        return "\n".join(lines)

    def _fetched_per_s(self) -> float:
        fetched = self.cached - min(self.reused, self.cached)
        return fetched / self.elapsed_s if self.elapsed_s > 0 else 0.0
