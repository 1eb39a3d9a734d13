"""Stage 1: ingest DICOM sources into the catalog and per-series volume stores."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from medseg.config import IngestConfig, MedsegConfig
from medseg.deid import keyed_hash
from medseg.deid_key import resolve_deid_key
from medseg.ingest.run import ingest
from medseg.ingest.source_walk import SourceProblem, walk_sources
from medseg.ingest.workers import INGEST_WORKER_MODULES
from medseg.io.catalog import Catalog
from medseg.runtime.cluster import dask_client
from medseg.stage_record import hash_inputs, save_record, up_to_date
from medseg.stages.outcome import ProgressFn, StageOutcome
from medseg.workspace import Workspace

STAGE = "ingest"


class SourceNotFoundError(FileNotFoundError):
    """A configured DICOM source folder does not exist."""


def source_listing_key(sources: list[Path]) -> str:
    """Hash of every file's (path, size, mtime) under the sources, and of every entry the walk
    reports (a dangling link, an unreadable folder ...): changes when anything arrives or changes.

    The same walk as ingest's scan (:func:`medseg.ingest.source_walk.walk_sources`): a single-file
    source counts, and symlink loops terminate.
    """
    problems: list[SourceProblem] = []
    entries = sorted(walk_sources(sources, problems))
    return hash_inputs(entries, sorted((p.path, p.reason.value) for p in problems))


def check_sources(sources: list[Path]) -> list[Path]:
    if not sources:
        raise SourceNotFoundError("no DICOM source given: pass SOURCE folders or set `sources` in the config")
    resolved = [Path(s).expanduser().resolve() for s in sources]
    missing = [str(s) for s in resolved if not s.exists()]
    if missing:
        raise SourceNotFoundError(f"DICOM source not found: {', '.join(missing)}")
    return resolved


def settings_key(ingest: IngestConfig) -> dict[str, Any]:
    """The ingest settings in the stage's input key (the key redacted); without channel rules, the same
    dict as before ``ingest.channels`` existed, so such workspaces keep their key."""
    settings = ingest.model_dump(mode="json")
    if not settings["channels"]:
        del settings["channels"]
    return settings


def run_ingest_stage(cfg: MedsegConfig, progress: ProgressFn | None = None, force: bool = False) -> StageOutcome:
    """Ingest ``cfg.sources`` into ``cfg.workspace`` unless nothing changed since the last run."""
    started = time.time()
    ws = Workspace.at(cfg.workspace).ensure()
    sources = check_sources(cfg.sources)
    # the config dump shows the key as '**********': a keyed fingerprint makes a new key re-ingest
    key_id = keyed_hash(resolve_deid_key(cfg.ingest, ws), "ingest-stage-key")
    key = hash_inputs(STAGE, source_listing_key(sources), settings_key(cfg.ingest), key_id)
    rec = None if force else up_to_date(ws, STAGE, key)
    if rec is not None and ws.catalog_path.exists() and Catalog(ws.catalog_path).count_retry_files():
        rec = None  # files that could not be read last time (permission, I/O) are read again
    if rec is not None:
        return StageOutcome(stage=STAGE, skipped=True, reason="sources unchanged since last ingest",
                            stats=rec.stats, outputs=rec.outputs)
    # the workers start while ingest scans
    with dask_client(cfg.dask, preload=INGEST_WORKER_MODULES, workers_in_background=True) as client:
        summary = ingest(sources, ws, cfg.ingest, client=client, progress=progress)
    stats = summary.model_dump(mode="json")
    rec = save_record(ws, STAGE, key, [ws.catalog_path], stats, started)
    return StageOutcome(stage=STAGE, seconds=rec.seconds, stats=stats, outputs=rec.outputs)
