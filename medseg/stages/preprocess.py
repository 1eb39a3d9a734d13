"""Stage 2: fingerprint → plan → preprocessed Zarr per case (Dask-parallel)."""

from __future__ import annotations

import time
from pathlib import Path

from medseg.config import MedsegConfig
from medseg.io.volume_store import is_complete
from medseg.preprocess.run import run_preprocess
from medseg.runtime.cluster import dask_client
from medseg.stage_record import hash_inputs, save_record, up_to_date
from medseg.stages.outcome import ProgressFn, StageOutcome
from medseg.workspace import Workspace

STAGE = "preprocess"


class NothingToPreprocessError(RuntimeError):
    """The workspace has no ingested labeled volumes."""


def stores_key(folder: Path) -> str:
    """Hash of the completed stores in ``folder`` (name + size/mtime of their root metadata)."""
    entries = []
    for path in sorted(folder.glob("*.zarr")):
        if not is_complete(path):
            continue
        st = (path / "zarr.json").stat()
        entries.append((path.name, st.st_size, st.st_mtime_ns))
    return hash_inputs(entries)


def run_preprocess_stage(cfg: MedsegConfig, progress: ProgressFn | None = None, force: bool = False) -> StageOutcome:
    started = time.time()
    ws = Workspace.at(cfg.workspace).ensure()
    if not any(ws.volumes_dir.glob("*.zarr")):
        raise NothingToPreprocessError(f"no ingested volumes in {ws.volumes_dir}: run `medseg ingest` first")
    key = hash_inputs(STAGE, stores_key(ws.volumes_dir), cfg.preprocess.model_dump(mode="json"), cfg.train.filters,
                      cfg.split.model_dump(mode="json"), cfg.seed)
    rec = None if force else up_to_date(ws, STAGE, key)
    if rec is not None:
        return StageOutcome(stage=STAGE, skipped=True, reason="volumes and plan settings unchanged",
                            stats=rec.stats, outputs=rec.outputs)

    def _progress(done: int, total: int) -> None:
        if progress is not None:
            progress("cases", done, total)

    with dask_client(cfg.dask) as client:
        summary = run_preprocess(ws, cfg, client, progress=_progress)
    stats = summary.model_dump(mode="json")
    if summary.failed and summary.cases_processed + summary.cases_skipped == 0:
        raise RuntimeError(f"preprocessing failed for every case: {summary.failed[:3]}")
    outputs = [str(ws.plan_path), str(ws.splits_path)]
    if summary.failed:  # no record: the next run retries the failed cases (the others are skipped per case)
        return StageOutcome(stage=STAGE, seconds=time.time() - started, stats=stats, outputs=outputs)
    rec = save_record(ws, STAGE, key, outputs, stats, started)
    return StageOutcome(stage=STAGE, seconds=rec.seconds, stats=stats, outputs=rec.outputs)
