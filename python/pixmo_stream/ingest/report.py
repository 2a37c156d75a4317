"""What a conversion did: the counts, the failures named one by one, and their summary.

Below both engines (`pixmo_stream.ingest.pipeline` runs the local one, `pixmo_stream.ray.convert`
the Ray one), which fill one `ConvertReport` the same way.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

REPORT_NAME = "convert-report.json"
MAX_NAMED_FAILURES = 100_000


@dataclass
class Failure:
    """One image that did not make it: ``cause`` is a short class (``missing``,
    ``not_an_image``, or the fetch's outcome, ``not_found``, ``timeout``, ...), ``detail``
    what exactly happened."""

    cause: str
    image_url: str | None
    input_rows: list[int]
    detail: str


@dataclass
class ConvertReport:
    """What a conversion did; printed by the CLI and written as ``convert-report.json``.
    ``fetch`` is the fetch report (``pixmo-stream fetch``'s JSON) when the conversion
    downloaded its images first."""

    preset: str
    inputs: list[str]
    output: str
    split: str
    input_rows: int = 0
    images: int = 0
    excluded_images: int = 0
    selected_images: int = 0
    records_written: int = 0
    kept_without_image: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    sha256_mismatches: int = 0
    failures: list[Failure] = field(default_factory=list)
    failures_not_named: int = 0
    workers: int = 0
    engine: str = "local"
    check: str = "decode"
    seconds: float = 0.0
    fetch: dict[str, Any] | None = None

    @property
    def records_per_second(self) -> float:
        return self.records_written / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["records_per_second"] = round(self.records_per_second, 1)
        return d

    def write(self, path: str) -> None:
        with open(path, "w", encoding="utf-8") as f:
            json.dump(self.to_dict(), f, indent=2)
            f.write("\n")


def count_failure(report: ConvertReport, failure: Failure, kept: bool) -> None:
    """Counts ``failure`` (``kept``: its record was written without image) and names it,
    up to `MAX_NAMED_FAILURES`."""
    if kept:
        report.kept_without_image += 1
    else:
        report.skipped[failure.cause] = report.skipped.get(failure.cause, 0) + 1
    if len(report.failures) < MAX_NAMED_FAILURES:
        report.failures.append(failure)
    else:
        report.failures_not_named += 1


def _where(report: ConvertReport) -> str:
    if report.engine == "ray":
        return "Ray tasks"
    return f"{report.workers} worker{'s' if report.workers != 1 else ''}"


def summarize(report: ConvertReport) -> list[str]:
    """The report as lines for a terminal."""
    lines = [
        f"preset      {report.preset} (split: {report.split})",
        f"input       {report.input_rows:,} rows over {report.images:,} images",
    ]
    if report.excluded_images:
        lines.append(f"excluded    {report.excluded_images:,} images (held-out evaluation images)")
    lines.append(
        f"written     {report.records_written:,} records to {report.output} "
        f"in {report.seconds:.2f} s ({report.records_per_second:,.0f} rec/s, "
        f"{_where(report)}, check: {report.check})"
    )
    if report.skipped:
        causes = ", ".join(f"{k} {v:,}" for k, v in sorted(Counter(report.skipped).items()))
        lines.append(f"skipped     {sum(report.skipped.values()):,} ({causes})")
    if report.kept_without_image:
        lines.append(f"no image    {report.kept_without_image:,} records kept without image")
    if report.sha256_mismatches:
        lines.append(
            f"sha256      {report.sha256_mismatches:,} images differ from the published hash "
            "(kept; sha256_mismatch is true)"
        )
    for f in report.failures[:10]:
        rows = ", ".join(str(r) for r in f.input_rows[:5])
        more = ", …" if len(f.input_rows) > 5 else ""
        lines.append(
            f"  {f.cause}: {f.image_url or '(no url)'} (input rows {rows}{more}): {f.detail}"
        )
    if len(report.failures) > 10:
        lines.append(f"  … {len(report.failures) - 10:,} more in {REPORT_NAME}")
    return lines
