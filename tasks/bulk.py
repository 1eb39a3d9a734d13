"""Prefect tasks of the bulk archive flow (wrap :mod:`medseg.ops.bulk`).

Only small values cross task boundaries: the manifest (counts and byte offsets) and batch
numbers; each batch task reads its own slice of the file list from the workspace.
"""

from __future__ import annotations

import threading
from pathlib import Path

import distributed
from prefect import task
from prefect.cache_policies import NO_CACHE

from medseg.config import MedsegConfig
from medseg.ingest.run import IngestSummary, ingest
from medseg.ingest.workers import INGEST_WORKER_MODULES
from medseg.ops.bulk import BatchRecord, BulkManifest, index_batch, write_manifest
from medseg.runtime.cluster import dask_client
from medseg.stages.ingest import check_sources
from medseg.tasks.common import RETRY_JITTER, _logger, retry_delays, retry_on_transient
from medseg.tasks.progress import TaskProgress
from medseg.workspace import Workspace


@task(name="bulk-scan", tags=["medseg", "bulk"], retries=2, retry_delay_seconds=retry_delays(2, 10.0),
      retry_jitter_factor=RETRY_JITTER, retry_condition_fn=retry_on_transient, cache_policy=NO_CACHE)
def bulk_scan_task(cfg: MedsegConfig, files_per_task: int) -> BulkManifest:
    """List every file under ``cfg.sources`` into a manifest in the workspace (streamed)."""
    ws = Workspace.at(cfg.workspace).ensure()
    manifest = write_manifest(check_sources(cfg.sources), ws, files_per_task)
    _logger().info("bulk manifest %s: %d files in %d batches of %d (scan %.1fs)", manifest.key, manifest.n_files,
                   manifest.n_batches, manifest.files_per_task, manifest.scan_seconds)
    return manifest


_CLIENTS: dict[str, distributed.Client] = {}
_CLIENTS_LOCK = threading.Lock()


def shared_client(address: str) -> distributed.Client:
    """One client per scheduler address for every batch task of this process (connecting costs ~0.2 s).

    A client whose connection was lost is replaced; clients are closed when the process exits.
    """
    with _CLIENTS_LOCK:
        client = _CLIENTS.get(address)
        if client is None or client.status not in ("running", "connecting"):
            client = distributed.Client(address, timeout="30s", set_as_default=False)
            _CLIENTS[address] = client
        return client


def close_shared_client(address: str | None) -> None:
    """Close this process's shared client of ``address`` (at the end of a bulk flow run)."""
    with _CLIENTS_LOCK:
        client = _CLIENTS.pop(address, None) if address else None
    if client is not None:
        client.close()


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
def bulk_assemble_task(cfg: MedsegConfig) -> IngestSummary:
    """Plan series and write volume stores for the indexed files (a normal incremental ingest)."""
    ws = Workspace.at(cfg.workspace).ensure()
    sources = [Path(s) for s in check_sources(cfg.sources)]
    # the workers start while ingest scans
    with dask_client(cfg.dask, preload=INGEST_WORKER_MODULES, workers_in_background=True) as client:
        summary = ingest(sources, ws, cfg.ingest, client=client, progress=TaskProgress("bulk-assemble"))
    _logger().info("bulk assemble: %s", summary.model_dump())
    return summary
