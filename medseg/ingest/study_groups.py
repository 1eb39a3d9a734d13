"""Plan and build one study group: the unit of work of ingest's volume phase (a Dask task runs several).

A study group is the set of studies whose series, SEG, RTSTRUCT and masks are planned together
(:meth:`~medseg.io.catalog.Catalog.study_groups`). The ingest process reads a group's catalog
rows and sends them, undecoded, with the previous run's series rows of those studies; the worker
decodes the headers, plans the cases (stack assembly, label linking), sorts them into unchanged,
resumed (finished by an interrupted run) and to build, and builds the last. So planning runs in
parallel instead of in the process that also schedules and stores.

Workers never open the catalog: SQLite in WAL mode must not be shared over a network file system,
and a remote Dask cluster reaches the workspace through one.
"""

from __future__ import annotations

import gc
import pickle
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medseg.ingest.build import build_case, label_refs
from medseg.ingest.case_plan import IngestPlan, PlannedCase, plan_ingest
from medseg.ingest.channels import RuleTuple
from medseg.ingest.volume_file_cases import OrphanLabel
from medseg.io.catalog import HeaderRow, header_of_row
from medseg.io.volume_store import is_complete, read_meta
from medseg.workspace import Workspace


@dataclass
class StudyGroup:
    """One group's plan and what its cases need: build, keep (unchanged) or take over (resumed)."""

    plan: IngestPlan
    to_build: list[PlannedCase] = field(default_factory=list)
    unchanged: list[PlannedCase] = field(default_factory=list)
    resumed: list[PlannedCase] = field(default_factory=list)
    results: dict[str, dict[str, Any]] = field(default_factory=dict)  # case id -> build (or resumed) result
    files_group: bool = False  # the NIfTI/NRRD group: finished last, after DICOM series claimed its label files


@dataclass
class GroupJob:
    """What a worker needs for one group: its file rows (or a plan made already) and its previous series rows."""

    previous: dict[str, dict[str, Any]]  # series key -> row of the previous run (only this group's studies)
    rows: list[HeaderRow] = field(default_factory=list)  # planned on the worker
    plan: IngestPlan | None = None  # planned by the caller (the files group, whose orphans every DICOM group needs)
    files_group: bool = False

    @property
    def n_files(self) -> int:
        """Files in this group (what sizes a Dask task)."""
        if self.plan is not None:
            return sum(len(pc.stack.paths) or 1 for pc in self.plan.cases)
        return len(self.rows)


@dataclass
class GroupContext:
    """Shared by every group of a run."""

    workspace_root: str
    secret: str
    roots: list[str]
    orphans: list[OrphanLabel]  # NIfTI/NRRD label files without an image: DICOM stacks on their grid claim them
    max_volume_voxels: int = 0  # ingest.max_volume_voxels (0: no limit)
    channels: list[RuleTuple] = field(default_factory=list)  # ingest.channels as (name, match, exclude)


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector (its passes over 100k+ fresh objects cost ~30 % of planning)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def plan_group(rows: list[HeaderRow], ctx: GroupContext, files_group: bool = False) -> IngestPlan:
    """Plan the cases of one group from its catalog rows."""
    ws = Workspace.at(ctx.workspace_root)
    with gc_paused():  # planning allocates ~10 objects per file and frees nothing cyclic
        headers = [header_of_row(r) for r in rows]
        return plan_ingest(headers, ws, ctx.secret, ctx.roots, orphans=None if files_group else ctx.orphans,
                           channels=ctx.channels)


def classify(plan: IngestPlan, previous: dict[str, dict[str, Any]], secret: str,
             files_group: bool = False) -> StudyGroup:
    """Sort a plan's cases: unchanged (same content hash, complete store), resumed, or to build."""
    group = StudyGroup(plan=plan, files_group=files_group)
    for pc in plan.cases:
        prev = previous.get(pc.job.case_id)
        if (
            prev is not None
            and prev.get("status") == "ingested"
            and prev.get("content_hash") == pc.content_hash
            and is_complete(Path(pc.job.volume_path))
        ):
            group.unchanged.append(pc)
        elif (res := resumed_result(pc, secret)) is not None:
            group.results[pc.job.case_id] = res
            group.resumed.append(pc)
        else:
            group.to_build.append(pc)
    return group


def resumed_result(pc: PlannedCase, secret: str) -> dict[str, Any] | None:
    """The build result of a store an interrupted run already finished for this exact content, else None.

    Only stores whose every planned label source was used qualify (label errors are not kept in
    stores, so a case with a failed label is rebuilt to report it again).
    """
    path = Path(pc.job.volume_path)
    if not path.is_dir() or not is_complete(path):
        return None
    try:
        meta = read_meta(path)
    except Exception:  # noqa: BLE001 - unreadable store: rebuild it
        return None
    source = meta.get("source") or {}
    planned = sorted({ls.series_uid for ls in pc.job.labels})
    if source.get("content_hash") != pc.content_hash or source.get("label_refs") != label_refs(secret, planned):
        return None
    label_source = str(source.get("label_source") or "none")
    return {
        "case_id": pc.job.case_id,
        "ok": True,
        "label_errors": [],
        "label_names": {int(k): str(v) for k, v in (meta.get("label_names") or {}).items()},
        "label_source": label_source,
        "has_labels": label_source != "none",
        "label_series_uids": planned,
    }


def plan_and_build(job: GroupJob, ctx: GroupContext) -> StudyGroup:
    """Plan (unless planned already), classify and build one group; never raises for a bad series."""
    plan = job.plan if job.plan is not None else plan_group(job.rows, ctx, job.files_group)
    group = classify(plan, job.previous, ctx.secret, job.files_group)
    for pc in group.to_build:
        group.results[pc.job.case_id] = build_case(pc.job, ctx.secret, ctx.max_volume_voxels, ctx.roots)
    return group


def plan_and_build_pickled(blob: bytes) -> bytes:
    """:func:`plan_and_build` for a pickled ``(GroupContext, [GroupJob, ...])``; the groups come back pickled.

    One bytes object each way: Dask would otherwise walk the rows looking for futures on submit and
    serialise the plans object by object.
    """
    ctx, jobs = pickle.loads(blob)
    return pickle.dumps([plan_and_build(job, ctx) for job in jobs], protocol=pickle.HIGHEST_PROTOCOL)
