"""Prefect task: train one model family (wraps :func:`medseg.stages.train.run_train_stage`).

Tagged ``gpu`` so a tag concurrency limit can allow one training at a time per GPU.
A retry resumes from the last checkpoint of the interrupted run.
"""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from medseg.config import MedsegConfig, ModelFamily
from medseg.stages.outcome import StageOutcome
from medseg.stages.train import run_train_stage
from medseg.tasks.common import RETRY_DELAYS, RETRY_JITTER, log_outcome, retry_on_transient
from medseg.tasks.progress import TaskProgress


@task(name="train", task_run_name="train-{family}", tags=["medseg", "train", "gpu"], retries=1,
      retry_delay_seconds=RETRY_DELAYS, retry_jitter_factor=RETRY_JITTER, retry_condition_fn=retry_on_transient,
      cache_policy=NO_CACHE)
def train_task(cfg: MedsegConfig, family: ModelFamily, force: bool = False,
               hold_promotion: str | None = None) -> StageOutcome:
    """Train ``family`` into a new bundle; skipped when data, plan and config are unchanged.
    ``hold_promotion``: why the bundle must not be promoted (the nightly drift gate)."""
    return log_outcome(run_train_stage(cfg, family, force=force, progress=TaskProgress(f"train-{family.value}"),
                                       hold_promotion=hold_promotion))
