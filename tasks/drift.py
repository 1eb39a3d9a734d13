"""Prefect task: the drift check of an ingest run's new cases (wraps :func:`medseg.stages.drift.run_drift_stage`).

Publishes the per-case table (``<name>-drift``) and the markdown report (``<name>-drift-summary``) as
artifacts; the files under ``reports/<run_id>/`` stay the source of truth.
"""

from __future__ import annotations

from collections.abc import Sequence

from prefect import task
from prefect.cache_policies import NO_CACHE

from medseg.config import MedsegConfig
from medseg.stages.drift import run_drift_stage
from medseg.stages.outcome import StageOutcome
from medseg.tasks.common import log_outcome, retry_on_transient, run_logger
from medseg.tasks.ops import artifact_key, publish_table


@task(name="drift", tags=["medseg", "drift"], retries=1, retry_condition_fn=retry_on_transient,
      cache_policy=NO_CACHE)
def drift_task(cfg: MedsegConfig, run_id: str, ingest_run: str | None = None,
               case_ids: Sequence[str] | None = None) -> StageOutcome:
    """Compare the cases ``ingest_run`` wrote (or ``case_ids``) with the plan's training cases."""
    outcome = run_drift_stage(cfg, run_id, ingest_run=ingest_run, case_ids=case_ids)
    if not outcome.skipped:
        flagged = outcome.stats["flagged"]
        if flagged:
            run_logger().warning("drift: %d of %d new case(s) out of distribution: %s", len(flagged),
                                 outcome.stats["cases"], ", ".join(flagged))
        publish_table(artifact_key(cfg.name, "drift"), outcome.stats["table"],
                      f"Drift: new cases vs the training cases ({run_id})", markdown=outcome.stats["markdown"])
    return log_outcome(outcome)
