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

import fcntl
import importlib
import logging
import os
import pickle
import shutil
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import distributed
from pydantic import BaseModel, Field

from medseg.config import IngestConfig
from medseg.deid_key import resolve_deid_key
from medseg.ingest.build import src_paths
from medseg.ingest.headers import read_header_batch
from medseg.ingest.planning import IngestPlan, PlannedCase, stack_row
from medseg.ingest.source_walk import SourceFile, SourceProblem, walk_sources
from medseg.ingest.study_groups import (
    GroupContext,
    GroupJob,
    StudyGroup,
    plan_and_build,
    plan_and_build_pickled,
    plan_group,
)
from medseg.io.catalog import Catalog, file_row
from medseg.io.dicom import fast_walk
from medseg.io.reasons import Reason
from medseg.io.volume_files import DATASET_JSON, volume_suffix
from medseg.io.volume_store import clean_partial_stores
from medseg.local_workers import INGEST_WORKER_MODULES
from medseg.parallel import TaskSizer, expected_workers, worker_threads
from medseg.workspace import Workspace

log = logging.getLogger(__name__)

ProgressFn = Callable[[str, int, int], None]
LABEL_KINDS = ("seg", "mask", "rtstruct", "label_file")  # series-table kinds that label an image


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


def scan_sources(sources: list[Path], problems: list[SourceProblem] | None = None) -> Iterator[SourceFile]:
    """Yield ``(absolute path, size, mtime_ns)`` of every regular file under ``sources``; see
    :func:`medseg.ingest.source_walk.walk_sources` (``problems`` collects the entries not ingested)."""
    return walk_sources(sources, problems)


class _WarmWorkers(distributed.WorkerPlugin):
    """Import what header reading and case building need on every worker, before it takes a task
    (pydicom: 0.25 s; the first file that is not a classic slice needs it).

    A plugin (not one warm-up task per worker) reaches each worker, including those still starting:
    tasks submitted before the workers exist all go to the first one that registers. Workers forked
    from medseg's fork server have these modules already (:mod:`medseg.local_workers`).
    """

    name = "medseg-ingest-imports"

    def setup(self, worker: distributed.Worker) -> None:
        for module in INGEST_WORKER_MODULES:
            importlib.import_module(module)


def _under(path: str, roots: list[str]) -> bool:
    return any(path == r or path.startswith(r.rstrip(os.sep) + os.sep) for r in roots)


def _batches(items: list[Any], size: int) -> list[list[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def _read_headers(
    items: Iterable[tuple[str, int, int]],
    total: int,
    cfg: IngestConfig,
    client: distributed.Client | None,
    progress: ProgressFn | None,
    catalog: Catalog,
    run_id: str,
    secret: str,
) -> int:
    """Read headers batch by batch (``secret``: the de-identification key); each batch is committed to the
    catalog as it completes.

    ``items`` is consumed lazily and at most a few batches per worker are in flight, so memory
    does not grow with the archive.
    """
    done = 0
    if client is None:
        for batch in _batched(items, cfg.files_per_batch):
            done += catalog.upsert_files(read_header_batch(batch, secret), run_id)
            if progress:
                progress("headers", done, total)
        return done
    batches = _batched(items, TaskSizer.for_run(total, cfg.files_per_batch, worker_threads(client)))
    packed = (pickle.dumps(b, protocol=pickle.HIGHEST_PROTOCOL) for b in batches)
    for blob in _bounded_map(client, header_rows_pickled, packed, secret=secret, run_id=run_id):
        done += catalog.insert_file_rows(pickle.loads(blob))
        if progress:
            progress("headers", done, total)
    return done


def header_rows(items: list[tuple[str, int, int]] | bytes, secret: str, run_id: str) -> list[tuple[Any, ...]]:
    """Catalog rows of a batch of files, made on the worker (the main process only stores them).

    ``items`` may come pickled, as Dask tasks get them: Dask walks a list argument element by element
    looking for futures (~15 ms for 1,000 files on submit), a bytes argument not at all.
    """
    batch = pickle.loads(items) if isinstance(items, bytes) else items
    return [file_row(h, run_id) for h in read_header_batch(batch, secret)]


def header_rows_pickled(items: list[tuple[str, int, int]] | bytes, secret: str, run_id: str) -> bytes:
    """:func:`header_rows` as one pickle: Dask would otherwise serialise a list result item by item
    (~15 ms per 256-row batch on each side)."""
    return pickle.dumps(header_rows(items, secret, run_id), protocol=pickle.HIGHEST_PROTOCOL)


def _batched(
    items: Iterable[Any], size: int | Callable[[int], int], weight: Callable[[Any], int] = lambda item: 1
) -> Iterator[list[Any]]:
    """Consecutive lists of items, each closed once its items' ``weight`` reaches ``size``.

    ``size`` may be a function of the weight batched so far (see :class:`medseg.parallel.TaskSizer`);
    it is asked again after each batch it closed.
    """
    size_of = size if callable(size) else (lambda done: size)
    batch: list[Any] = []
    weighed = done = 0
    target = size_of(0)
    for item in items:
        batch.append(item)
        weighed += weight(item)
        if weighed >= target:
            yield batch
            done += weighed
            batch, weighed = [], 0
            target = size_of(done)
    if batch:
        yield batch


def _in_flight_limit(client: distributed.Client) -> int:
    return max(4, 4 * expected_workers(client))


def _bounded_map(
    client: distributed.Client, fn: Callable[..., Any], args: Iterable[Any], **kwargs: Any
) -> Iterator[Any]:
    """``client.map`` over a lazy iterable, keeping a bounded number of tasks in flight; yields results as done."""
    limit = _in_flight_limit(client)
    it = iter(args)
    pending = distributed.as_completed()
    n = 0
    for arg in it:
        pending.add(client.submit(fn, arg, pure=False, **kwargs))
        n += 1
        if n >= limit:
            break
    for fut in pending:
        result = fut.result()
        fut.release()
        nxt = next(it, _END)
        if nxt is not _END:
            pending.add(client.submit(fn, nxt, pure=False, **kwargs))
        yield result


_END = object()


def index_files(
    items: list[tuple[str, int, int]],
    ws: Workspace,
    cfg: IngestConfig,
    client: distributed.Client | None = None,
    progress: ProgressFn | None = None,
    run_id: str | None = None,
) -> int:
    """Read and commit the headers of the ``(path, size, mtime_ns)`` items not yet indexed as they are.

    The building block of the bulk flow: one call per batch of files; a later :func:`ingest` of the
    same sources finds them indexed and only plans and builds volumes. Idempotent: files already in
    the catalog with the same size and mtime are skipped. Returns the number of headers read.
    """
    catalog = Catalog(ws.catalog_path)
    known = catalog.lookup_files([p for p, _, _ in items])
    todo = [(p, s, m) for p, s, m in items if known.get(p) != (s, m)]
    if not todo:
        return 0
    return _read_headers(todo, len(todo), cfg, client, progress, catalog, run_id or "bulk",
                         resolve_deid_key(cfg, ws))


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
    run_id = time.strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]
    if fast_walk.C_WALK is None:
        log.warning("the compiled header walk (medseg.io.dicom._walk) is missing: headers are read by the "
                    "pure-Python walk (same results, ~3x slower); reinstall medseg where a C compiler is available")
    ws.volumes_dir.mkdir(parents=True, exist_ok=True)
    with _workspace_lock(ws):
        return _ingest_locked(sources, ws, cfg, client, progress, run_id, t0)


@contextmanager
def _workspace_lock(ws: Workspace) -> Iterator[None]:
    """Exclusive lock on ``<ws>/.ingest.lock`` (released by the OS even if the process is killed)."""
    path = ws.root / ".ingest.lock"
    with open(path, "a+") as fh:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info("waiting for another ingest into %s to finish", ws.root)
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def clean_stale_stores(volumes_dir: Path) -> int:
    """Remove temporary store directories left by a killed run (see :func:`clean_partial_stores`)."""
    return clean_partial_stores(volumes_dir)


@dataclass
class _RunState:
    """What the run accumulates over the study groups (small: one row per series, not per file)."""

    previous: dict[str, dict[str, Any]]
    previous_quarantine: dict[str, list[dict[str, Any]]]
    run_id: str
    series_rows: list[dict[str, Any]] = field(default_factory=list)
    quarantine: list[dict[str, Any]] = field(default_factory=list)
    file_series: dict[str, str] = field(default_factory=dict)
    claims: dict[str, tuple[str, str]] = field(default_factory=dict)
    built_ok: int = 0
    unchanged: int = 0
    resumed: int = 0
    groups_done: int = 0

    by_study: dict[str | None, dict[str, dict[str, Any]]] = field(default_factory=dict)  # ``previous`` by study

    def __post_init__(self) -> None:
        for key, row in self.previous.items():
            self.by_study.setdefault(row.get("study_key"), {})[key] = row

    def previous_of(self, study_keys: list[str | None]) -> dict[str, dict[str, Any]]:
        """The previous run's series rows of these studies (what a worker needs to classify their cases)."""
        out: dict[str, dict[str, Any]] = {}
        for k in study_keys:
            out.update(self.by_study.get(k, {}))
        return out

    def absorb(self, group: StudyGroup) -> None:
        """Take a planned group's file assignments and label-file claims."""
        self.file_series.update(group.plan.file_series)
        self.claims.update(group.plan.claims)

    def finish(self, group: StudyGroup) -> None:
        if group.files_group and self.claims:  # label files a DICOM series took over are no longer unmatched
            _apply_claims(group.plan, self.claims)
        rows, quarantine = _finalise(group.plan, group.to_build + group.resumed, group.unchanged, group.results,
                                     self.previous, self.run_id)
        for pc in group.unchanged:  # their label problems persist from earlier runs
            kept = self.previous_quarantine.get(pc.job.case_id, [])
            quarantine.extend({**q, "series_uid": q["series"]} for q in kept)
        self.series_rows.extend(rows)
        self.quarantine.extend(quarantine)
        self.built_ok += sum(1 for pc in group.to_build if group.results[pc.job.case_id]["ok"])
        self.unchanged += len(group.unchanged)
        self.resumed += len(group.resumed)
        self.groups_done += 1


def _group_jobs(catalog: Catalog, groups: list[list[str | None]], ws: Workspace, cfg: IngestConfig,
                roots: list[str], state: _RunState, secret: str) -> tuple[GroupContext, Iterator[GroupJob]]:
    """The run's shared context and one job per study group (a study's series, SEG, RTSTRUCT and masks).

    Studies that share a series (broken exports) form one group (:meth:`Catalog.study_groups`).
    The NIfTI/NRRD files group is planned here, first: DICOM series on the grid of its unpaired
    label files may claim them. Only one group's rows are in memory at a time (jobs are made
    lazily), so memory does not grow with the archive.
    """
    ctx = GroupContext(workspace_root=str(ws.root), secret=secret, roots=roots, orphans=[],
                       max_volume_voxels=cfg.max_volume_voxels)
    files_job: GroupJob | None = None
    if groups and groups[-1] == [None]:
        groups = groups[:-1]
        plan = plan_group(catalog.file_header_rows("ok", study_keys=[None]), ctx, files_group=True)
        ctx.orphans = plan.orphans
        ids = {pc.job.case_id for pc in plan.cases}
        previous = {k: row for k, row in state.previous.items() if k in ids}
        files_job = GroupJob(previous=previous, plan=plan, files_group=True)

    def jobs() -> Iterator[GroupJob]:
        if files_job is not None:
            yield files_job
        for keys in groups:
            yield GroupJob(previous=state.previous_of(keys), rows=catalog.file_header_rows("ok", study_keys=keys))

    return ctx, jobs()


def _apply_claims(plan: IngestPlan, claims: dict[str, tuple[str, str]]) -> None:
    """Mark label files DICOM series claimed as label sources (or why not) in the files group's plan."""
    by_key = {o.series_key: o.path for o in plan.orphans}
    for row in plan.series_rows:
        path = by_key.get(row.get("series_key", ""))
        if path is None or path not in claims:
            continue
        reason, message = claims[path]
        if not reason:
            row.update(status="label_source", reason=None, message=message)
        else:
            row.update(status="quarantined", reason=reason, message=message)
    plan.quarantine = [q for q in plan.quarantine if q["path"] not in claims] + [
        {"path": p, "series_uid": None, "case_id": None, "reason": reason, "message": m}
        for p, (reason, m) in sorted(claims.items())
        if reason and p in by_key.values()
    ]


def _build_groups(jobs: Iterator[GroupJob], ctx: GroupContext, n_groups: int, state: _RunState,
                  client: distributed.Client | None, progress: ProgressFn | None,
                  files_per_task: Callable[[int], int] = lambda done: 1) -> None:
    """Plan and build every group (Dask: several groups per task, bounded in flight); finish each in order.

    The files group (NIfTI/NRRD) is finished last, once every DICOM group had its chance to claim
    its label files.
    """
    deferred: list[StudyGroup] = []

    def built(group: StudyGroup) -> None:
        state.absorb(group)
        if group.files_group:
            deferred.append(group)
            return
        state.finish(group)
        if progress:
            progress("volumes", state.groups_done, n_groups)

    if client is None:
        for job in jobs:
            built(plan_and_build(job, ctx))
    else:
        _build_on_dask(_chunks_by_files(jobs, files_per_task), ctx, client, built)
    for group in deferred:
        state.finish(group)
        if progress:
            progress("volumes", state.groups_done, n_groups)


def _chunks_by_files(jobs: Iterable[GroupJob], files_per_task: Callable[[int], int]) -> Iterator[list[GroupJob]]:
    """Consecutive jobs, a chunk closed once it holds ``files_per_task(files in earlier chunks)``
    files (a group is never split; see :class:`medseg.parallel.TaskSizer`).

    One Dask task per chunk: a task costs scheduling and transfers in three processes, so a task
    sized by files (as header batches are) suits both many small studies and a few large ones.
    """
    return _batched(jobs, files_per_task, weight=lambda job: job.n_files)


def _build_on_dask(chunks: Iterator[list[GroupJob]], ctx: GroupContext, client: distributed.Client,
                   built: Callable[[StudyGroup], None]) -> None:
    """Run one Dask task per chunk of jobs, a bounded number of tasks in flight; groups are handed to
    ``built`` in job order (a run's catalog rows do not depend on which worker was faster)."""
    limit = _in_flight_limit(client)
    pending = distributed.as_completed()
    seq_of: dict[Any, int] = {}  # future key -> its chunk's number
    done: dict[int, list[StudyGroup]] = {}
    next_seq = submitted = 0

    def settle(fut: distributed.Future) -> None:
        nonlocal next_seq
        done[seq_of.pop(fut.key)] = pickle.loads(fut.result())
        fut.release()
        while next_seq in done:
            for group in done.pop(next_seq):
                built(group)
            next_seq += 1

    for chunk in chunks:
        fut = client.submit(plan_and_build_pickled, pickle.dumps((ctx, chunk), protocol=pickle.HIGHEST_PROTOCOL),
                            pure=False)
        seq_of[fut.key] = submitted
        submitted += 1
        pending.add(fut)
        while len(seq_of) >= limit:
            settle(next(pending))
    for fut in pending:
        settle(fut)


def clean_scratch(ws: Workspace) -> int:
    """Remove the scratch file lists (``.scan-*.pkl``, ``.todo-*.pkl``: source paths) a killed run left.

    Called under the workspace lock, so no other ingest is using them. Returns how many were removed.
    """
    removed = 0
    for pattern in (".scan-*.pkl", ".todo-*.pkl"):
        for path in ws.root.glob(pattern):
            path.unlink(missing_ok=True)
            removed += 1
    if removed:
        log.info("removed %d scratch file(s) of an interrupted ingest", removed)
    return removed


def _is_volume_file(path: str) -> bool:
    return bool(volume_suffix(path)) or os.path.basename(path) == DATASET_JSON


_SCRATCH_CHUNK = 4096


def _scan_to_disk(sources: list[Path], scratch: Path, volume_files: bool = True,
                  problems: list[SourceProblem] | None = None) -> tuple[int, int]:
    """Write ``(path, size, mtime_ns)`` of every source file to ``scratch`` (pickled chunks); entries
    that are not ingestible files go to ``problems``.

    Returns:
        (files written, NIfTI/NRRD/dataset.json files left out because ``volume_files`` is false).
    """
    n = ignored = 0
    with open(scratch, "wb") as fh:
        chunk: list[tuple[str, int, int]] = []
        for item in scan_sources(sources, problems):
            if not volume_files and _is_volume_file(item[0]):
                ignored += 1
                continue
            chunk.append(item)
            n += 1
            if len(chunk) >= _SCRATCH_CHUNK:
                pickle.dump(chunk, fh, protocol=pickle.HIGHEST_PROTOCOL)
                chunk = []
        if chunk:
            pickle.dump(chunk, fh, protocol=pickle.HIGHEST_PROTOCOL)
    return n, ignored


def _read_scratch(scratch: Path) -> Iterator[tuple[str, int, int]]:
    with open(scratch, "rb") as fh:
        while True:
            try:
                chunk = pickle.load(fh)
            except EOFError:
                return
            yield from chunk


def _select_unindexed(catalog: Catalog, scratch: Path, todo: Path) -> int:
    """Copy the scanned files not indexed with the same size and mtime to ``todo``; return their count."""
    n = 0
    with open(todo, "wb") as out:
        for chunk in _batched(_read_scratch(scratch), _SCRATCH_CHUNK):
            known = catalog.lookup_files([c[0] for c in chunk])
            new = [(p, size, mtime) for p, size, mtime in chunk if known.get(p) != (size, mtime)]
            if new:
                pickle.dump(new, out, protocol=pickle.HIGHEST_PROTOCOL)
                n += len(new)
    return n


def _ingest_locked(
    sources: list[Path],
    ws: Workspace,
    cfg: IngestConfig,
    client: distributed.Client | None,
    progress: ProgressFn | None,
    run_id: str,
    t0: float,
) -> IngestSummary:
    # workers import the decoders (before their first task) while this process scans the sources
    if client is not None:
        client.register_plugin(_WarmWorkers())
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
        n_files, n_ignored = _scan_to_disk(sources, scratch, cfg.volume_files, problems)
        if n_ignored:
            log.info("ignored %d NIfTI/NRRD/dataset.json file(s) (ingest.volume_files=false)", n_ignored)
        if progress:
            progress("scan", n_files, n_files)
        n_todo = _select_unindexed(catalog, scratch, todo_file)
        _read_headers(_read_scratch(todo_file), n_todo, cfg, client, progress, catalog, run_id, secret)
        removed = catalog.files_not_in((p for p, _, _ in _read_scratch(scratch)), roots, n_seen=n_files)
    finally:
        scratch.unlink(missing_ok=True)
        todo_file.unlink(missing_ok=True)
    catalog.delete_files(removed)

    previous_quarantine: dict[str, list[dict[str, Any]]] = {}
    for q in catalog.quarantine():
        if q.get("case_id"):
            previous_quarantine.setdefault(q["case_id"], []).append(q)
    state = _RunState(previous=catalog.series_rows(), previous_quarantine=previous_quarantine, run_id=run_id)
    groups = catalog.study_groups("ok")
    n_groups = len(groups)
    if progress:
        progress("plan", 0, n_groups)
    ctx, jobs = _group_jobs(catalog, groups, ws, cfg, roots, state, secret)
    sizer = TaskSizer.for_run(catalog.count_files("ok"), cfg.files_per_batch, worker_threads(client))
    _build_groups(jobs, ctx, n_groups, state, client, progress, files_per_task=sizer)
    catalog.set_file_series(state.file_series)

    series_rows, quarantine = state.series_rows, state.quarantine
    quarantine.extend(_file_quarantine(catalog, run_id))
    quarantine.extend(p.quarantine_row(run_id) for p in problems)
    studies = _studies(series_rows, run_id)
    catalog.replace_run_state(series_rows, quarantine, studies)
    pruned = _prune_stale_volumes(ws, state.previous, series_rows)

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


def _finalise(
    plan: IngestPlan,
    built: list[PlannedCase],
    unchanged: list[PlannedCase],
    results: dict[str, dict[str, Any]],
    previous: dict[str, dict[str, Any]],
    run_id: str,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    rows = [dict(r, run_id=run_id) for r in plan.series_rows]
    quarantine = [dict(q, run_id=run_id) for q in plan.quarantine]
    quarantine.extend(dict(q, run_id=run_id) for q in _label_row_status(rows, built, results, previous))
    for pc in unchanged:
        prev = previous[pc.job.case_id]
        rows.append({**prev, "run_id": prev.get("run_id")})
    for pc in built:
        res = results[pc.job.case_id]
        row = stack_row(pc.stack, pc.job.case_id, "ingested" if res["ok"] else "quarantined")
        row.update(run_id=run_id, content_hash=pc.content_hash if res["ok"] else None)
        for err in res.get("label_errors", []):  # one row per file of the label source (the culprit's first)
            paths = [err["path"]] + [p for p in err.get("paths", []) if p != err["path"]]
            quarantine.extend(
                {
                    "path": p,
                    "series_uid": err["series_uid"],
                    "case_id": pc.job.case_id,
                    "reason": err["reason"],
                    "message": err["message"],
                    "run_id": run_id,
                }
                for p in paths
            )
        if res["ok"]:
            row.update(
                volume_path=pc.job.volume_path,
                has_labels=bool(res.get("has_labels")),
                label_names={str(k): v for k, v in res["label_names"].items()},
                label_source=res["label_source"],
            )
        else:
            row.update(reason=res["reason"], message=res["message"], has_labels=False)
            quarantine.extend(
                {
                    "path": p,
                    "series_uid": pc.stack.series_uid,
                    "case_id": pc.job.case_id,
                    "reason": res["reason"],
                    "message": res["message"],
                    "run_id": run_id,
                }
                for p in pc.stack.paths
            )
        rows.append(row)
    return rows, quarantine


#: label kind -> reason when the image it labels was not ingested
_ORPHANED = {"seg": Reason.SEG_UNREFERENCED, "rtstruct": Reason.RTSTRUCT_UNREFERENCED}


def _label_row_status(
    rows: list[dict[str, Any]],
    built: list[PlannedCase],
    results: dict[str, dict[str, Any]],
    previous: dict[str, dict[str, Any]],
) -> list[dict[str, Any]]:
    """A label series/file linked in the plan but unusable by every case that tried it is quarantined,
    and so is one whose every image case failed to build (its quarantine rows are returned).

    Label series linked only to unchanged cases keep the status they got when those were built.
    """
    rebuilt = {ls.series_uid for pc in built for ls in pc.job.labels}
    failed: dict[str, tuple[PlannedCase, list[str]]] = {}  # label uid -> a failed case it labels, its files
    for pc in built:
        if not results[pc.job.case_id].get("ok"):
            for ls in pc.job.labels:
                failed.setdefault(ls.series_uid, (pc, src_paths(ls)))
    orphaned: list[dict[str, Any]] = []
    used: set[str] = set()
    errors: dict[str, dict[str, Any]] = {}
    for res in results.values():
        if res.get("ok"):
            used.update(res.get("label_series_uids", []))
        for err in res.get("label_errors", []):
            errors.setdefault(err["series_uid"], err)
    for row in rows:
        if row.get("kind") not in LABEL_KINDS or row.get("status") != "label_source":
            continue
        uid = row["series_uid"]
        if uid in rebuilt:
            if uid not in used and uid in errors:
                row.update(status="quarantined", reason=errors[uid]["reason"], message=errors[uid]["message"])
            elif uid not in used and uid in failed:
                pc, paths = failed[uid]
                res = results[pc.job.case_id]
                reason = _ORPHANED.get(row["kind"], Reason.LABEL_UNMATCHED).value
                message = (f"{paths[0]}{' ...' if len(paths) > 1 else ''}: labels case {pc.job.case_id}, whose image "
                           f"series was quarantined ({res.get('reason')}); fix that series to use these labels")
                row.update(status="quarantined", reason=reason, message=message)
                orphaned.extend({"path": p, "series_uid": uid, "case_id": pc.job.case_id, "reason": reason,
                                 "message": message} for p in paths)
        elif row["series_key"] in previous:
            prev = previous[row["series_key"]]
            row.update(status=prev.get("status"), reason=prev.get("reason"), message=prev.get("message"))
    return orphaned


def _prune_stale_volumes(ws: Workspace, previous: dict[str, dict[str, Any]], rows: list[dict[str, Any]]) -> int:
    """Delete stores of cases ingested before but not now (files removed, series now invalid).

    Downstream stages list ``ws.volumes_dir``, so it must hold exactly the ingested cases. Only
    stores the catalog itself recorded inside ``ws.volumes_dir`` are ever deleted.
    """
    current = {r["case_id"] for r in rows if r.get("kind") == "image" and r.get("status") == "ingested"}
    removed = 0
    volumes = ws.volumes_dir.resolve()
    for key, prev in previous.items():
        path = prev.get("volume_path")
        if prev.get("status") != "ingested" or not path or key in current:
            continue
        store = Path(path)
        if store.resolve().parent == volumes and store.is_dir():
            shutil.rmtree(store, ignore_errors=True)
            removed += 1
            log.info("removed stale volume store %s (case no longer ingested)", store)
    return removed


def _file_quarantine(catalog: Catalog, run_id: str) -> list[dict[str, Any]]:
    return [
        {
            "path": h["path"],
            "series_uid": h.get("series_uid"),
            "case_id": None,
            "reason": h["reason"],
            "message": h["message"],
            "run_id": h.get("run_id", run_id),
        }
        for h in catalog.file_headers("quarantined")
    ]


def _studies(rows: list[dict[str, Any]], run_id: str) -> list[dict[str, Any]]:
    studies: dict[str, dict[str, Any]] = {}
    for r in rows:
        key = r.get("study_key")
        if not key:
            continue
        s = studies.setdefault(
            key, {"study_key": key, "patient_key": r.get("patient_key"), "n_series": 0, "run_id": run_id}
        )
        s["n_series"] += 1
    return sorted(studies.values(), key=lambda s: s["study_key"])
