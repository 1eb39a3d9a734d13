"""Prefect task: fingerprint, plan and preprocess (wraps :func:`medseg.stages.preprocess.run_preprocess_stage`)."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from medseg.config import MedsegConfig
from medseg.stages.outcome import StageOutcome
from medseg.stages.preprocess import run_preprocess_stage
from medseg.tasks.common import RETRY_DELAYS, RETRY_JITTER, log_outcome, retry_on_transient
from medseg.tasks.dashboard import dashboard_artifact
from medseg.tasks.progress import TaskProgress


@task(name="preprocess", tags=["medseg", "preprocess"], retries=2, retry_delay_seconds=RETRY_DELAYS,
      retry_jitter_factor=RETRY_JITTER,
      retry_condition_fn=retry_on_transient, cache_policy=NO_CACHE)
def preprocess_task(cfg: MedsegConfig, force: bool = False) -> StageOutcome:
    """Preprocess every new or changed case into Zarr; skipped when volumes and settings are unchanged."""
    with dashboard_artifact("preprocess"):
        return log_outcome(run_preprocess_stage(cfg, progress=TaskProgress("preprocess"), force=force))
