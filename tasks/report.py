"""Prefect task: metrics + report files, published as Prefect artifacts."""

from __future__ import annotations

from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from medseg.config import MedsegConfig
from medseg.stages.outcome import StageOutcome
from medseg.stages.report import run_report_stage
from medseg.tasks.common import log_outcome, retry_on_transient
from medseg.tasks.ops import artifact_key


@task(name="report", tags=["medseg", "report"], retries=1, retry_condition_fn=retry_on_transient, cache_policy=NO_CACHE)
def report_task(cfg: MedsegConfig, predictions: dict[str, str], run_id: str,
                cases: list[str] | None = None) -> StageOutcome:
    """Evaluate predictions (of ``cases`` only, when given), write summary.json/report.md/report.html and artifacts."""
    outcome = run_report_stage(cfg, predictions, run_id, cases)
    key = artifact_key(cfg.name, "report")
    try:
        create_table_artifact(table=outcome.stats["table"], key=key,
                              description=f"Per-model metrics on held-out cases ({run_id})")
        create_markdown_artifact(markdown=outcome.stats["markdown"], key=f"{key}-summary",
                                 description=f"medseg report {run_id}")
        if outcome.stats.get("deltas"):
            create_table_artifact(table=outcome.stats["deltas"], key=f"{key}-deltas",
                                  description=f"Metric deltas between models / vs the previous champion ({run_id})")
    except Exception:  # no API (task.fn() in unit tests): the files are the source of truth
        pass
    return log_outcome(outcome)
