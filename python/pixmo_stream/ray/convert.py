"""``convert --engine ray``: the conversion's ordered batches run as Ray tasks.

The driver reads the annotations and makes the same batches of pending records as a local
run (`pixmo_stream.ingest.pipeline`, which calls this module; this module uses only what both
engines share, `pixmo_stream.ingest.finishing` and `pixmo_stream.ingest.report`). Consecutive
batches form a partition (`partition_images` images, as far as the images known when the
conversion starts allow); each partition is one Ray task that reads and checks its images and
writes its records into a staging directory of its own (`staging`). Results are taken in
partition order and the partitions are committed in that order, so the output holds the
records of a local run in the same order, and the report counts and names the same failures.
A task that Ray retries writes a fresh directory; only attempts that returned are committed.

Every node must see the image folder (when there is one) and the output's parent directory
at the same paths: a shared file system.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import ray

from ..ingest.finishing import Job, finish_batch
from ..ingest.report import ConvertReport, Failure, count_failure
from ..schema import Schema
from ..writer import Writer
from .staging import StagedPart, check_output, commit, discard, new_attempt, open_root

# Images per Ray task at most (whole batches of 64): each task writes shards of its own, so a
# task should hold enough images for shards of a useful size.
PARTITION_IMAGES = 1024


@dataclass
class PartitionResult:
    part: StagedPart
    failures: list[tuple[Failure, bool]] = field(default_factory=list)  # (failure, kept)
    sha256_mismatches: int = 0
    outcomes: int = 0


def convert_partition(
    index: int, jobs: list[Job], root: str, schema: Schema, options: dict[str, Any]
) -> PartitionResult:
    """Finishes and writes one partition's records into a fresh staging directory."""
    where = new_attempt(root, index)
    result = PartitionResult(StagedPart(index, where, 0))
    written = 0
    with Writer(where, schema, **options) as writer:
        for job in jobs:
            for rec, failure in finish_batch(job):
                result.outcomes += 1
                if failure is not None:
                    result.failures.append((failure, rec is not None))
                if rec is not None:
                    writer.write(rec)
                    written += 1
                    result.sha256_mismatches += bool(rec["sha256_mismatch"])
    result.part = StagedPart(index, where, written)
    return result


def partition_images(images: int, cpus: int) -> int:
    """Images per task: `PARTITION_IMAGES`, or fewer when the input would not give every
    CPU of the cluster two tasks."""
    return max(1, min(PARTITION_IMAGES, math.ceil(images / max(1, 2 * cpus))))


def _partitions(jobs: Iterable[Job], images: int) -> Iterator[list[Job]]:
    """Consecutive batches, closed once they hold ``images`` images."""
    part: list[Job] = []
    held = 0
    for job in jobs:
        part.append(job)
        held += len(job[0])
        if held >= images:
            yield part
            part, held = [], 0
    if part:
        yield part


def write_on_ray(
    jobs: Iterable[Job],
    output: str,
    schema: Schema,
    *,
    metadata: dict[str, str],
    shard_bytes: int | None,
    overwrite: bool,
    report: ConvertReport,
    progress: Callable[[int], None] | None,
    address: str | None,
) -> None:
    """Runs ``jobs`` on Ray (connecting to ``address``, or starting a local cluster when
    Ray is not initialised yet and none is given) and commits their records to ``output``."""
    check_output(output, overwrite)
    started = not ray.is_initialized()
    if started and address is None:  # a new local cluster, or the one RAY_ADDRESS names
        ray.init(include_dashboard=False)
    elif started:
        ray.init(address=address)
    # else this process is connected already, and stays on its cluster
    root = open_root(output)
    options: dict[str, Any] = {"metadata": metadata}
    if shard_bytes is not None:
        options["shard_bytes"] = shard_bytes
    task = ray.remote(convert_partition)
    in_flight: deque[Any] = deque()
    try:
        cpus = int(ray.cluster_resources().get("CPU", 1))
        in_flight_max = max(2, 2 * cpus)
        size = partition_images(report.selected_images, cpus)
        parts: list[StagedPart] = []

        def take() -> None:
            result: PartitionResult = ray.get(in_flight.popleft())
            for failure, kept in result.failures:
                count_failure(report, failure, kept=kept)
            report.records_written += result.part.num_rows
            report.sha256_mismatches += result.sha256_mismatches
            parts.append(result.part)
            if progress is not None:
                progress(result.outcomes)

        for index, part in enumerate(_partitions(jobs, size)):
            in_flight.append(task.remote(index, part, root, schema, options))
            if len(in_flight) >= in_flight_max:
                take()
        while in_flight:
            take()
        commit(parts, output, overwrite=overwrite, schema=schema, metadata=metadata)
    except BaseException:
        for ref in in_flight:
            ray.cancel(ref, force=True)
        # Removing the root makes any attempt that starts later fail; one already writing is
        # waited for (a cancelled task ends at once), so that nothing is left behind.
        discard(root)
        if in_flight:
            ray.wait(list(in_flight), num_returns=len(in_flight), timeout=60)
        discard(root)
        raise
    finally:
        if started:
            ray.shutdown()
