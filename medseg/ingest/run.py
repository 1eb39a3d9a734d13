"""Ingest DICOM sources into the workspace catalog and per-case volume stores.

Phases (``progress(phase, done, total)`` is called for each): ``scan`` (list every file, any
name), ``headers`` (read new/changed files only; Dask batches of up to ``cfg.files_per_batch``
when a client is given), ``plan`` (list the study groups), ``volumes`` (per study group: assemble
stacks, link labels, decode + write changed cases; consecutive groups of up to about as many files
as a header batch per Dask task, planned and built on the workers, when a client is given; see
:mod:`medseg.ingest.study_groups`).

Incremental: a file whose (path, size, mtime_ns) is already in the catalog is not read again; a
case whose content hash (instances + label sources + build version) is unchanged and whose volume
store is complete is not rewritten. Inputs are only ever read.

Crash safety (a run killed at any point, then re-run, ends with the catalog of an uninterrupted
run): header rows are committed per batch (one SQLite transaction each), so a re-run reads only
the files not yet indexed; volume stores are written atomically and carry their content hash, so
a re-run keeps every store finished before the crash (``series_resumed``); series, studies and
quarantine are replaced in one transaction at the end. Leftover temporary store directories
(``.<case>.zarr.partial-*`` / ``.old-*``) and scratch file lists (``.scan-*.pkl`` / ``.todo-*.pkl``)
are removed at the start of a run, under an exclusive lock on ``<workspace>/.ingest.lock`` (one
ingest per workspace at a time).

The sources are listed by :func:`medseg.ingest.source_walk.walk_sources`; what it reports (dangling
links, FIFOs, device files, unlistable folders, non-UTF-8 names) becomes quarantine rows of the run.
Files quarantined ``io_error`` are read again by every run.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import distributed
from pydantic import BaseModel, Field

from medseg.config import IngestConfig
from medseg.deid_key import resolve_deid_key
from medseg.ingest.file_index import (
    ProgressFn,
    clean_scratch,
    read_headers,
    scan_to_disk,
    select_unindexed,
)
from medseg.ingest.group_builds import RunState, build_groups, group_jobs
from medseg.ingest.run_rows import file_quarantine, prune_stale_volumes, studies_of
from medseg.ingest.source_walk import SourceProblem
from medseg.io.catalog import Catalog
from medseg.io.dicom import fast_walk
from medseg.io.volume_store import clean_partial_stores
from medseg.runtime.cluster import TaskSizer, worker_threads
from medseg.runtime.locks import exclusive_lock
from medseg.runtime.run_id import new_run_id
from medseg.runtime.scratch import read_scratch
from medseg.workspace import Workspace

log = logging.getLogger(__name__)


class IngestSummary(BaseModel):
    """What one :func:`ingest` call did."""

    run_id: str
    files_seen: int = Field(0, description="files found under the sources")
    files_indexed: int = Field(0, description="new or changed files whose header was read")
    files_skipped: int = Field(0, description="files already indexed with the same size and mtime")
    files_removed: int = Field(0, description="catalog files no longer present under the sources")
    files_ignored: int = Field(0, description="NIfTI/NRRD/dataset.json files skipped (ingest.volume_files=false)")
    series_total: int = Field(0, description="image stacks + label series known to the catalog")
    series_ingested: int = Field(0, description="cases whose volume store was (re)written")
    series_unchanged: int = Field(0, description="cases whose volume store was already up to date")
    series_resumed: int = Field(0, description="cases whose store an interrupted run had already written")
    cases: int = Field(0, description="ingested cases (with a volume store) after this run")
    labeled_cases: int = Field(0, description="ingested cases with a gt label")
    quarantined: int = Field(0, description="quarantine entries (files/series) after this run")
    volumes_removed: int = Field(0, description="stores of cases that are no longer ingested (deleted)")
    seconds: float = 0.0


def ingest(
    sources: list[Path],
    ws: Workspace,
    cfg: IngestConfig,
    client: distributed.Client | None = None,
    progress: ProgressFn | None = None,
) -> IngestSummary:
    """Ingest every file under ``sources`` into ``ws`` (catalog + volume stores); see module doc.

    Never stops on a bad file or series: those are quarantined with a reason code.

    Raises:
        FileNotFoundError: A source folder does not exist.
    """
    t0 = time.time()
    run_id = new_run_id(unique=True)
    if fast_walk.C_WALK is None:
        log.warning("the compiled header walk (medseg.io.dicom._walk) is missing: headers are read by the "
                    "pure-Python walk (same results, ~3x slower); reinstall medseg where a C compiler is available")
    ws.volumes_dir.mkdir(parents=True, exist_ok=True)
    with exclusive_lock(ws.root / ".ingest.lock", f"waiting for another ingest into {ws.root} to finish"):
        return _ingest_locked(sources, ws, cfg, client, progress, run_id, t0)


def clean_stale_stores(volumes_dir: Path) -> int:
    """Remove temporary store directories left by a killed run (see :func:`clean_partial_stores`)."""
    return clean_partial_stores(volumes_dir)


def _ingest_locked(
    sources: list[Path],
    ws: Workspace,
    cfg: IngestConfig,
    client: distributed.Client | None,
    progress: ProgressFn | None,
    run_id: str,
    t0: float,
) -> IngestSummary:
    clean_stale_stores(ws.volumes_dir)
    clean_scratch(ws)
    secret = resolve_deid_key(cfg, ws)
    catalog = Catalog(ws.catalog_path)
    roots = [str(Path(s).expanduser().resolve()) for s in sources]
    catalog.start_run(run_id, roots)

    # the file lists live in scratch files, not in memory: flat memory whatever the archive size
    scratch, todo_file = ws.root / f".scan-{run_id}.pkl", ws.root / f".todo-{run_id}.pkl"
    problems: list[SourceProblem] = []
    try:
        n_files, n_ignored = scan_to_disk(sources, scratch, cfg.volume_files, problems)
        if n_ignored:
            log.info("ignored %d NIfTI/NRRD/dataset.json file(s) (ingest.volume_files=false)", n_ignored)
        if progress:
            progress("scan", n_files, n_files)
        n_todo = select_unindexed(catalog, scratch, todo_file)
        read_headers(read_scratch(todo_file), n_todo, cfg, client, progress, catalog, run_id, secret)
        removed = catalog.files_not_in((p for p, _, _ in read_scratch(scratch)), roots, n_seen=n_files)
    finally:
        scratch.unlink(missing_ok=True)
        todo_file.unlink(missing_ok=True)
    catalog.delete_files(removed)

    previous_quarantine: dict[str, list[dict[str, Any]]] = {}
    for q in catalog.quarantine():
        if q.get("case_id"):
            previous_quarantine.setdefault(q["case_id"], []).append(q)
    state = RunState(previous=catalog.series_rows(), previous_quarantine=previous_quarantine, run_id=run_id)
    groups = catalog.study_groups("ok")
    n_groups = len(groups)
    if progress:
        progress("plan", 0, n_groups)
    ctx, jobs = group_jobs(catalog, groups, ws, cfg, roots, state, secret)
    sizer = TaskSizer.for_run(catalog.count_files("ok"), cfg.files_per_batch, worker_threads(client))
    build_groups(jobs, ctx, n_groups, state, client, progress, files_per_task=sizer)
    catalog.set_file_series(state.file_series)

    series_rows, quarantine = state.series_rows, state.quarantine
    quarantine.extend(file_quarantine(catalog, run_id))
    quarantine.extend(p.quarantine_row(run_id) for p in problems)
    studies = studies_of(series_rows, run_id)
    catalog.replace_run_state(series_rows, quarantine, studies)
    pruned = prune_stale_volumes(ws, state.previous, series_rows)

    image_rows = [r for r in series_rows if r["kind"] == "image" and r["status"] == "ingested"]
    summary = IngestSummary(
        run_id=run_id,
        files_seen=n_files,
        files_indexed=n_todo,
        files_skipped=n_files - n_todo,
        files_removed=len(removed),
        files_ignored=n_ignored,
        series_total=len(series_rows),
        series_ingested=state.built_ok,
        series_unchanged=state.unchanged,
        series_resumed=state.resumed,
        cases=len(image_rows),
        labeled_cases=sum(1 for r in image_rows if r.get("has_labels")),
        quarantined=len(quarantine),
        volumes_removed=pruned,
        seconds=round(time.time() - t0, 3),
    )
    catalog.finish_run(run_id, summary.model_dump(mode="json"))
    log.info("ingest %s: %s", run_id, summary.model_dump())
    return summary
