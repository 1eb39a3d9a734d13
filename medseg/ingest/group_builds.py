"""Ingest's volumes phase: plan and build every study group, finish them in group order.

Groups are planned and built on the Dask workers (:mod:`medseg.ingest.study_groups`), consecutive
groups in one task until it holds about as many files as a header batch; the ingest process
accumulates their series and quarantine rows (:class:`RunState`) in group order.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import distributed

from medseg.config import IngestConfig
from medseg.ingest.case_plan import IngestPlan
from medseg.ingest.file_index import ProgressFn
from medseg.ingest.run_rows import finalise
from medseg.ingest.study_groups import (
    GroupContext,
    GroupJob,
    StudyGroup,
    plan_and_build,
    plan_and_build_pickled,
    plan_group,
)
from medseg.io.catalog import Catalog
from medseg.runtime.batching import batched, ordered_bounded_map
from medseg.workspace import Workspace


@dataclass
class RunState:
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
        rows, quarantine = finalise(group.plan, group.to_build + group.resumed, group.unchanged, group.results,
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


def group_jobs(catalog: Catalog, groups: list[list[str | None]], ws: Workspace, cfg: IngestConfig,
                roots: list[str], state: RunState, secret: str) -> tuple[GroupContext, Iterator[GroupJob]]:
    """The run's shared context and one job per study group (a study's series, SEG, RTSTRUCT and masks).

    Studies that share a series (broken exports) form one group (:meth:`Catalog.study_groups`).
    The NIfTI/NRRD files group is planned here, first: DICOM series on the grid of its unpaired
    label files may claim them. Only one group's rows are in memory at a time (jobs are made
    lazily), so memory does not grow with the archive.
    """
    ctx = GroupContext(workspace_root=str(ws.root), secret=secret, roots=roots, orphans=[],
                       max_volume_voxels=cfg.max_volume_voxels,
                       channels=[(r.name, r.match, r.exclude) for r in cfg.channels])
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


def build_groups(jobs: Iterator[GroupJob], ctx: GroupContext, n_groups: int, state: RunState,
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
        _build_on_dask(chunks_by_files(jobs, files_per_task), ctx, client, built)
    for group in deferred:
        state.finish(group)
        if progress:
            progress("volumes", state.groups_done, n_groups)


def chunks_by_files(jobs: Iterable[GroupJob], files_per_task: Callable[[int], int]) -> Iterator[list[GroupJob]]:
    """Consecutive jobs, a chunk closed once it holds ``files_per_task(files in earlier chunks)``
    files (a group is never split; see :class:`medseg.runtime.cluster.TaskSizer`).

    One Dask task per chunk: a task costs scheduling and transfers in three processes, so a task
    sized by files (as header batches are) suits both many small studies and a few large ones.
    """
    return batched(jobs, files_per_task, weight=lambda job: job.n_files)


def _build_on_dask(chunks: Iterator[list[GroupJob]], ctx: GroupContext, client: distributed.Client,
                   built: Callable[[StudyGroup], None]) -> None:
    """Run one Dask task per chunk of jobs, a bounded number of tasks in flight; groups are handed to
    ``built`` in job order (a run's catalog rows do not depend on which worker was faster)."""
    packed = (pickle.dumps((ctx, chunk), protocol=pickle.HIGHEST_PROTOCOL) for chunk in chunks)
    for blob in ordered_bounded_map(client, plan_and_build_pickled, packed):
        for group in pickle.loads(blob):
            built(group)
