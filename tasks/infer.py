"""Prefect task: batch inference (wraps :func:`medseg.stages.infer.run_infer_stage`)."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from medseg.config import MedsegConfig, ModelFamily
from medseg.stages.infer import run_infer_stage
from medseg.stages.outcome import StageOutcome
from medseg.tasks.common import RETRY_DELAYS, RETRY_JITTER, log_outcome, retry_on_transient
from medseg.tasks.dashboard import dashboard_artifact
from medseg.tasks.progress import TaskProgress


@task(name="infer", task_run_name="infer-{family}", tags=["medseg", "infer"], retries=2,
      retry_delay_seconds=RETRY_DELAYS, retry_jitter_factor=RETRY_JITTER,
      retry_condition_fn=retry_on_transient, cache_policy=NO_CACHE)
def infer_task(cfg: MedsegConfig, family: ModelFamily, bundle_path: str | None = None,
               case_ids: list[str] | None = None, cases: str = "test") -> StageOutcome:
    """Predict the selected cases with a bundle (default: champion).

    ``case_ids`` wins when given; else ``cases`` = "test" (held-out split) or "pending" (every
    ingested case without a prediction from the bundle's version).
    """
    from pathlib import Path

    bundle = Path(bundle_path) if bundle_path else None
    with dashboard_artifact(f"infer-{family.value}"):  # when the cases fan out over Dask workers
        return log_outcome(run_infer_stage(cfg, family, bundle, case_ids,
                                           progress=TaskProgress(f"infer-{family.value}"), cases=cases))
