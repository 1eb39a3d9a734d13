"""Prefect tasks of the bulk archive flow (wrap :mod:`medseg.ops.bulk`).

Only small values cross task boundaries: the manifest (counts and byte offsets) and batch
numbers; each batch task reads its own slice of the file list from the workspace.
"""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from medseg.config import MedsegConfig
from medseg.ops.bulk import BatchRecord, BulkManifest, index_batch, write_manifest
from medseg.runtime.cluster import shared_client
from medseg.stages.ingest import check_sources, run_ingest_stage
from medseg.stages.outcome import StageOutcome
from medseg.tasks.common import RETRY_JITTER, retry_delays, retry_on_transient, run_logger
from medseg.tasks.dashboard import dashboard_artifact
from medseg.tasks.progress import TaskProgress
from medseg.workspace import Workspace


@task(name="bulk-scan", tags=["medseg", "bulk"], retries=2, retry_delay_seconds=retry_delays(2, 10.0),
      retry_jitter_factor=RETRY_JITTER, retry_condition_fn=retry_on_transient, cache_policy=NO_CACHE)
def bulk_scan_task(cfg: MedsegConfig, files_per_task: int) -> BulkManifest:
    """List every file under ``cfg.sources`` into a manifest in the workspace (streamed)."""
    ws = Workspace.at(cfg.workspace).ensure()
    manifest = write_manifest(check_sources(cfg.sources), ws, files_per_task)
    run_logger().info("bulk manifest %s: %d files in %d batches of %d (scan %.1fs)", manifest.key, manifest.n_files,
                   manifest.n_batches, manifest.files_per_task, manifest.scan_seconds)
    return manifest


@task(name="bulk-batch", task_run_name="bulk-batch-{batch}", tags=["medseg", "bulk"], retries=3,
      retry_delay_seconds=retry_delays(3, 10.0), retry_jitter_factor=RETRY_JITTER,
      retry_condition_fn=retry_on_transient, cache_policy=NO_CACHE)
def bulk_batch_task(cfg: MedsegConfig, manifest: BulkManifest, batch: int, run_id: str) -> BatchRecord:
    """Index one batch of the manifest on the Dask cluster at ``cfg.dask.address`` (or in-process)."""
    ws = Workspace.at(cfg.workspace)
    client = shared_client(cfg.dask.address) if cfg.dask.address else None
    return index_batch(ws, cfg.ingest, manifest, batch, client, run_id)


@task(name="bulk-assemble", tags=["medseg", "bulk", "ingest"], retries=2, retry_delay_seconds=retry_delays(2, 10.0),
      retry_jitter_factor=RETRY_JITTER, retry_condition_fn=retry_on_transient, cache_policy=NO_CACHE)
def bulk_assemble_task(cfg: MedsegConfig) -> StageOutcome:
    """Plan series and write volume stores for the indexed files: the ingest stage (incremental; it
    records its input key like ``medseg ingest``)."""
    with dashboard_artifact("bulk-assemble"):
        outcome = run_ingest_stage(cfg, progress=TaskProgress("bulk-assemble"))
    run_logger().info("bulk assemble: %s", outcome.stats)
    return outcome
