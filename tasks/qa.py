"""Prefect task: prediction QA (wraps :func:`medseg.stages.qa.run_qa_stage`), published as a table artifact."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from medseg.config import MedsegConfig
from medseg.stages.outcome import StageOutcome
from medseg.stages.qa import run_qa_stage
from medseg.tasks.common import log_outcome, retry_on_transient, run_logger
from medseg.tasks.ops import artifact_key, publish_table


@task(name="qa", tags=["medseg", "qa"], retries=1, retry_condition_fn=retry_on_transient, cache_policy=NO_CACHE)
def qa_task(cfg: MedsegConfig, predictions: dict[str, str], run_id: str,
            cases: list[str] | None = None) -> StageOutcome:
    """Score every predicted case (of ``cases`` only, when given): ``reports/<run_id>/qa.{json,md,html}`` and the
    table artifact ``<name>-qa`` (flagged cases first; markdown artifact ``<name>-qa-summary``)."""
    outcome = run_qa_stage(cfg, predictions, run_id, cases)
    flagged = outcome.stats["flagged"]
    if flagged:
        run_logger().warning("prediction QA: %d of %d cases flagged (top: %s); see %s", flagged,
                             outcome.stats["cases"], outcome.stats["top"], outcome.outputs[0])
    publish_table(artifact_key(cfg.name, "qa"), outcome.stats["table"],
                  f"Prediction QA ({run_id}): {flagged} of {outcome.stats['cases']} cases flagged, flagged first",
                  markdown=outcome.stats["markdown"])
    return log_outcome(outcome)
