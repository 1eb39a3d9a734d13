"""How the bulk flow runs its batches, as plain functions (the Prefect flow only wires them).

* :func:`pending_batches`: the batches still to run (completed ones left a record; see
  :func:`medseg.ops.bulk.completed_batches`);
* :func:`run_batches`: submit them with a bounded number in flight, collect the results in
  submission order, report progress after each;
* :func:`bulk_result` / :func:`bulk_table_row`: what the run returns and the table it publishes;
* :func:`cluster_address`: one Dask cluster for the whole run (the configured scheduler, or a
  LocalCluster started here), handed to the batch tasks by address; each process's batch tasks
  share one client per address (:func:`medseg.runtime.cluster.shared_client`), closed when the
  run ends.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Protocol, TypeVar

from medseg.config import DaskConfig
from medseg.ops.bulk import BatchRecord, BulkManifest, BulkTotals
from medseg.runtime.cluster import close_shared_client, dask_client

R = TypeVar("R")
R_co = TypeVar("R_co", covariant=True)


class Pending(Protocol[R_co]):
    """A submitted batch: a Prefect future, a ``concurrent.futures.Future`` ..."""

    def result(self) -> R_co: ...


def pending_batches(n_batches: int, done: Collection[int]) -> list[int]:
    """The batches of ``range(n_batches)`` not in ``done``, in order."""
    return [b for b in range(n_batches) if b not in done]


def run_batches(batches: Iterable[int], submit: Callable[[int], Pending[R]], window: int,
                on_progress: Callable[[int], None] | None = None, done_before: int = 0) -> list[R]:
    """Submit every batch, at most ``window`` in flight; return their results in submission order.

    Args:
        submit: starts one batch and returns its pending result.
        window: batches in flight at a time (at least 1).
        on_progress: called with the number of batches done (``done_before`` + those finished
            here) after each result.
    """
    in_flight: deque[Pending[R]] = deque()
    pending = deque(batches)
    done = done_before
    results: list[R] = []
    while pending or in_flight:
        while pending and len(in_flight) < max(1, window):
            in_flight.append(submit(pending.popleft()))
        results.append(in_flight.popleft().result())
        done += 1
        if on_progress is not None:
            on_progress(done)
    return results


@contextmanager
def cluster_address(cfg: DaskConfig, preload: Sequence[str] = ()) -> Iterator[str | None]:
    """The scheduler address of the run's cluster: ``cfg.address``, or a LocalCluster started for
    the block (``preload``: see :func:`~medseg.runtime.cluster.dask_client`). The shared client of
    that address is closed at the end."""
    if cfg.address:
        try:
            yield cfg.address
        finally:
            close_shared_client(cfg.address)
        return
    with dask_client(cfg, preload=preload) as client:
        address = client.scheduler.address if client.scheduler is not None else None
        try:
            yield address
        finally:
            close_shared_client(address)


def bulk_result(run_id: str, manifest: BulkManifest, records: Sequence[BatchRecord], done_before: Collection[int],
                assembled: dict[str, Any] | None, wall: float, timings: dict[str, float]) -> dict[str, Any]:
    """The bulk flow's return value: the batches run and skipped, summed timings, the assembly stats."""
    return {
        "run_id": run_id,
        "manifest": manifest.key,
        "n_files": manifest.n_files,
        "n_batches": manifest.n_batches,
        "batches_run": [r.batch for r in records],
        "batches_skipped": sorted(done_before),
        "scan_seconds": manifest.scan_seconds,
        "work_seconds": round(sum(r.work_seconds for r in records), 4),
        "read_seconds": round(sum(r.read_seconds for r in records), 4),
        "commit_seconds": round(sum(r.commit_seconds for r in records), 4),
        "lookup_seconds": round(sum(r.lookup_seconds for r in records), 4),
        "cpu_seconds": {k: round(sum(getattr(r, f"{k}_cpu_seconds") for r in records), 4)
                        for k in ("read", "commit", "lookup")},
        "workers": max((r.workers for r in records), default=1),
        "files_indexed": sum(r.indexed for r in records),
        "assemble": assembled,
        "wall_seconds": round(wall, 3),
        "timings": {k: round(v, 3) for k, v in timings.items()},
    }


def bulk_table_row(result: dict[str, Any], totals: BulkTotals) -> dict[str, Any]:
    """The one-row table of a bulk run (its Prefect artifact and log line)."""
    row: dict[str, Any] = {
        "manifest": result["manifest"],
        "files": result["n_files"],
        "batches": result["n_batches"],
        "batches_run": len(result["batches_run"]),
        "batches_skipped": len(result["batches_skipped"]),
        "files indexed": result["files_indexed"],
        "quarantined": totals.quarantined,
        "scan_s": result["scan_seconds"],
        "wall_s": round(result["wall_seconds"], 2),
    }
    assembled = result["assemble"]
    if assembled is not None:
        row.update({"series ingested": assembled["series_ingested"], "cases": assembled["cases"]})
    return row
