"""Drift check after ingest: the cases an ingest run wrote, compared with the plan's training cases.

Writes ``reports/<run_id>/drift.json``, ``drift.md`` and ``drift.png`` (:mod:`medseg.drift`). Skipped,
with the reason, before the first plan (nothing to compare with) and when the run wrote no case.
Always runs otherwise (no stage record: it is a check of one run's cases, not a product).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from medseg.config import MedsegConfig
from medseg.drift.check import check_drift, write_drift
from medseg.drift.report import DriftReport, drift_markdown
from medseg.drift.rules import DriftRules
from medseg.io.catalog import Catalog
from medseg.plan import Plan
from medseg.stages.outcome import StageOutcome
from medseg.workspace import Workspace

STAGE = "drift"


def drift_stats(report: DriftReport) -> dict[str, object]:
    """The outcome stats: counts and share (one line), flagged ids, table rows and markdown (artifacts)."""
    return {
        "cases": len(report.cases),
        "out_of_distribution": len(report.flagged),
        "share": round(report.share, 4),
        "flagged": report.flagged,
        "table": report.table(),
        "markdown": drift_markdown(report, png_name=None),
    }


def run_drift_stage(cfg: MedsegConfig, run_id: str, *, ingest_run: str | None = None,
                    case_ids: Sequence[str] | None = None) -> StageOutcome:
    """Check ``case_ids``, or the cases ingest run ``ingest_run`` wrote, for drift.

    Args:
        cfg: config (``workspace``; the rules from ``ops.drift_*``).
        run_id: the report folder, ``reports/<run_id>/`` (a nightly run's id puts the report next to its metrics).
        ingest_run: an ingest run id (``IngestSummary.run_id``): its new and changed cases are checked.
        case_ids: the cases to check instead.
    """
    started = time.time()
    ws = Workspace.at(cfg.workspace)
    if not ws.plan_path.is_file():
        return StageOutcome(stage=STAGE, skipped=True,
                            reason="no plan yet: nothing to compare with (`medseg preprocess` makes one)")
    if case_ids is None:
        case_ids = Catalog(ws.catalog_path, create=False).cases_written_by(ingest_run) if ingest_run else []
    if not case_ids:
        return StageOutcome(stage=STAGE, skipped=True, reason="no new or changed case to check")
    report = check_drift(ws, list(case_ids), DriftRules.from_ops(cfg.ops), run_id, Plan.load(ws.plan_path).plan_hash())
    paths = write_drift(report, ws.reports_dir / run_id)
    return StageOutcome(stage=STAGE, seconds=time.time() - started, stats=drift_stats(report),
                        outputs=[str(p) for p in paths])
