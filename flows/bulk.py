"""Bulk archive flow: scan → resumable batches of thousands of files (Dask inside each task) → assemble.

Resumable: every completed batch leaves ``WS/bulk/<manifest>/batch-<n>.json``; a rerun (after a
crash, a cancel or a killed process) skips those batches, and inside an interrupted batch the
files already committed to the catalog are skipped. A progress artifact is updated per batch.
"""

from __future__ import annotations

import time
from typing import Any
from uuid import UUID

from prefect import flow
from prefect.artifacts import create_progress_artifact, update_progress_artifact

from medseg.config import MedsegConfig
from medseg.ingest.workers import INGEST_WORKER_MODULES
from medseg.ops.bulk import completed_batches, totals
from medseg.ops.bulk_run import bulk_result, bulk_table_row, cluster_address, pending_batches, run_batches
from medseg.ops.params import resolve_config
from medseg.runtime.run_id import new_run_id
from medseg.tasks.bulk import bulk_assemble_task, bulk_batch_task, bulk_scan_task
from medseg.tasks.common import run_logger, with_transient_retries
from medseg.tasks.dashboard import dashboard_artifact
from medseg.tasks.notify import FAILURE_HOOKS
from medseg.tasks.ops import artifact_key, publish_table
from medseg.workspace import Workspace


def _progress(artifact: UUID | None, done: int, total: int, key: str) -> UUID | None:
    pct = 100.0 * done / total if total else 100.0
    text = f"bulk {key}: {done}/{total} batches"
    try:
        if artifact is None:
            created = create_progress_artifact(pct, key=artifact_key("bulk", key, "progress"), description=text)
            return created if isinstance(created, UUID) else None
        update_progress_artifact(artifact, pct, description=text)
    except Exception:  # noqa: BLE001 - best effort
        return artifact
    return artifact


@flow(name="medseg-bulk-ingest", log_prints=True, on_failure=FAILURE_HOOKS, on_crashed=FAILURE_HOOKS)
def bulk_flow(
    config: MedsegConfig | dict[str, Any] | None = None,
    config_path: str | None = None,
    overrides: list[str] | None = None,
    files_per_task: int | None = None,
    assemble: bool = True,
    run_id: str | None = None,
) -> dict[str, Any]:
    """Index every file under ``sources`` in resumable batches, then plan and build volumes.

    Args:
        config: the run's :class:`~medseg.config.MedsegConfig` as a dict (or use ``config_path``).
        config_path: YAML config file (deployments); ``overrides`` are ``key=value`` items.
        files_per_task: files per Prefect task (default ``ops.bulk_files_per_task``).
        assemble: run the final ingest (series planning + volume stores) after the batches.
        run_id: recorded in the catalog rows and batch records (default: UTC timestamp).
    """
    t0 = time.perf_counter()
    cfg = resolve_config(config, config_path, overrides)
    ws = Workspace.at(cfg.workspace).ensure()
    run_id = run_id or new_run_id("bulk")
    log = run_logger()
    timings: dict[str, float] = {}
    manifest = bulk_scan_task(cfg, files_per_task or cfg.ops.bulk_files_per_task)
    timings["scan_task"] = time.perf_counter() - t0
    done_before = completed_batches(ws, manifest)
    todo = pending_batches(manifest.n_batches, done_before)
    log.info("bulk %s: %d batches, %d already done, %d to run", manifest.key, manifest.n_batches,
             len(done_before), len(todo))
    batch_task = with_transient_retries(bulk_batch_task, cfg.ops.transient_retries, cfg.ops.retry_backoff_s)
    artifact = _progress(None, len(done_before), manifest.n_batches, manifest.key)

    def progress(done: int) -> None:
        nonlocal artifact
        artifact = _progress(artifact, done, manifest.n_batches, manifest.key)

    t1 = time.perf_counter()
    with dashboard_artifact("bulk"), cluster_address(cfg.dask, preload=INGEST_WORKER_MODULES) as address:
        run_cfg = cfg.model_copy(update={"dask": cfg.dask.model_copy(update={"address": address})})
        records = run_batches(todo, lambda batch: batch_task.submit(run_cfg, manifest, batch, run_id),
                              cfg.ops.bulk_tasks_in_flight, progress, done_before=len(done_before))
        timings["batches"] = time.perf_counter() - t1
    timings["batches_and_close"] = time.perf_counter() - t1
    assembled = bulk_assemble_task(cfg).stats if assemble else None
    wall = time.perf_counter() - t0
    result = bulk_result(run_id, manifest, records, done_before, assembled, wall, timings)
    row = bulk_table_row(result, totals(ws, manifest))
    publish_table(artifact_key(cfg.name, "bulk"), [row], f"bulk ingest {run_id}")
    log.info("bulk %s finished: %s", manifest.key, row)
    return result

__all__ = ["bulk_flow"]
