"""Preprocess stage: fingerprint -> plan -> per-case preprocessed stores -> splits.

Incremental: a case is redone only when its source store's hash or the plan hash differs from the
values recorded in its preprocessed store (``source`` attrs). The fingerprint of unchanged source
stores is cached under ``preprocessed/fingerprint_cache/``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from distributed import Client
from pydantic import BaseModel, Field

from medseg.config import MedsegConfig
from medseg.io.case_arrays import label_volume_names
from medseg.io.volume_store import clean_partial_stores, is_complete, read_meta
from medseg.plan import Plan
from medseg.preprocess.case import CaseResult, preprocess_case
from medseg.preprocess.fanout import Outcome, fan_out
from medseg.preprocess.fingerprint import CaseError, compute_fingerprint
from medseg.preprocess.planner import make_plan
from medseg.splits import Splits, make_splits
from medseg.workspace import Workspace

log = logging.getLogger(__name__)


class PreprocessSummary(BaseModel):
    """Outcome of :func:`run_preprocess`."""

    cases_total: int = Field(description="labeled, completely ingested cases")
    cases_processed: int
    cases_skipped: int = Field(description="already preprocessed with the same source and plan hash")
    failed: list[CaseError] = Field(default_factory=list)
    plan_hash: str
    seconds: float
    cases_unlabeled: int = Field(0, description="complete stores without a gt label (not training data)")
    cases_incomplete: int = Field(0, description="stores skipped because their write never completed")


@dataclass(frozen=True)
class CaseTask:
    """One case to preprocess (picklable, tokenisable for ``client.map(pure=True)``)."""

    case_id: str
    volume_path: str
    out_path: str
    source_hash: str


def _process(task: CaseTask, plan_json: str) -> CaseResult:
    """Worker entry point: preprocess one case (the plan travels as JSON)."""
    plan = Plan.model_validate_json(plan_json)
    return preprocess_case(Path(task.volume_path), Path(task.out_path), plan, task.source_hash)


def is_up_to_date(out_path: Path, src_hash: str, plan_hash: str) -> bool:
    """True when ``out_path`` is a complete preprocessed store made from this source with this plan."""
    if not is_complete(out_path):
        return False
    source = read_meta(out_path).get("source", {})
    return bool(source.get("source_hash") == src_hash and source.get("plan_hash") == plan_hash)


def _scan(ws: Workspace) -> tuple[list[Path], int, int]:
    """Labeled complete stores, plus the counts of unlabeled and incomplete ones."""
    labeled, unlabeled, incomplete = [], 0, 0
    for path in sorted(ws.volumes_dir.glob("*.zarr")):
        if not is_complete(path):
            incomplete += 1
            log.warning("skipping %s: the store was never completed (interrupted ingest?)", path)
        elif "gt" in label_volume_names(path):
            labeled.append(path)
        else:
            unlabeled += 1
    return labeled, unlabeled, incomplete


def run_preprocess(
    ws: Workspace,
    cfg: MedsegConfig,
    client: Client | None,
    progress: Callable[[int, int], None] | None = None,
    freeze_plan: bool | None = None,
) -> PreprocessSummary:
    """Run the preprocess stage over ``ws.volumes_dir``.

    Writes ``ws.fingerprint_path``, ``ws.plan_path``, ``ws.preprocessed_case_path(case_id)`` for
    every labeled case and ``ws.splits_path`` (over the labeled cases that have an up-to-date
    preprocessed store). A failing case is reported in ``failed`` and the others complete.

    Args:
        ws: workspace.
        cfg: full config (``preprocess``, ``train.filters``, ``split``, ``seed`` are used).
        client: Dask client (cases fan out with ``client.map``), or None for in-process.
        progress: ``progress(done, total)`` over the labeled cases (skipped ones count as done).
        freeze_plan: re-use ``ws.plan_path`` when it exists instead of re-planning. By default the
            plan is recomputed from the current fingerprint, so new cases can change it (e.g. the CT
            intensity percentiles), which redoes every case; freeze it for nightly increments.
            None = ``cfg.preprocess.freeze_plan`` when the config has that field, else False.
    """
    start = time.perf_counter()
    cases_dir = ws.preprocessed_case_path("_").parent
    clean_partial_stores(cases_dir)
    labeled, unlabeled, incomplete = _scan(ws)
    if not labeled:
        raise ValueError(
            f"no labeled ingested case in {ws.volumes_dir} (stores need a complete write and a 'gt' label);"
            " run `medseg ingest` with segmentations first"
        )
    fp = compute_fingerprint(labeled, client, cache_dir=ws.preprocessed_dir / "fingerprint_cache")
    fp.save(ws.fingerprint_path)
    if freeze_plan is None:
        freeze_plan = bool(getattr(cfg.preprocess, "freeze_plan", False))
    if freeze_plan and ws.plan_path.is_file():
        plan = Plan.load(ws.plan_path)
        log.info("re-using the frozen plan %s", plan.plan_hash())
    else:
        plan = make_plan(fp, cfg.preprocess, cfg.train)  # spatial_dims: cfg.preprocess, None = planner decides
        plan.save(ws.plan_path)
    plan_hash = plan.plan_hash()
    by_id = {p.stem: p for p in labeled}
    failed = list(fp.failed)
    todo: list[CaseTask] = []
    skipped: list[str] = []
    for c in fp.cases:
        out = ws.preprocessed_case_path(c.case_id)
        if is_up_to_date(out, c.source_hash, plan_hash):
            skipped.append(c.case_id)
        else:
            todo.append(CaseTask(c.case_id, str(by_id[c.case_id]), str(out), c.source_hash))
    total = len(labeled)
    done_before = len(skipped) + len(failed)
    if progress is not None:
        progress(done_before, total)

    def _progress(done: int, _n: int) -> None:
        if progress is not None:
            progress(done_before + done, total)

    scheduler = client.scheduler if client is not None else None
    log.info(
        "preprocessing %d of %d labeled cases (%d up to date, plan %s) %s",
        len(todo), total, len(skipped), plan_hash, f"on {scheduler.address}" if scheduler else "in-process",
    )

    def _report(o: Outcome[CaseTask, CaseResult], done: int, n: int) -> None:
        if o.error is not None:
            log.error("[%d/%d] preprocessing %s failed: %s", done, n, o.item.case_id, o.error)
        elif o.value is not None:
            log.info(
                "[%d/%d] preprocessed %s: %s -> %s in %.1fs",
                done, n, o.item.case_id, o.value.native_shape, o.value.shape, o.value.seconds,
            )

    outcomes = fan_out(_process, todo, client, _progress, on_outcome=_report, plan_json=plan.model_dump_json())
    processed = 0
    for o in outcomes:
        if o.error is not None:
            failed.append(CaseError(case_id=o.item.case_id, error=o.error))
        else:
            processed += 1
    clean_partial_stores(cases_dir)  # every task has finished: leftovers are from killed workers
    ok = sorted(
        c.case_id
        for c in fp.cases
        if is_up_to_date(ws.preprocessed_case_path(c.case_id), c.source_hash, plan_hash)
    )
    previous = Splits.load(ws.splits_path) if ws.splits_path.is_file() else None
    make_splits(ok, cfg.split, cfg.seed, previous=previous).save(ws.splits_path)
    return PreprocessSummary(
        cases_total=total,
        cases_processed=processed,
        cases_skipped=len(skipped),
        failed=sorted(failed, key=lambda e: e.case_id),
        plan_hash=plan_hash,
        seconds=time.perf_counter() - start,
        cases_unlabeled=unlabeled,
        cases_incomplete=incomplete,
    )
