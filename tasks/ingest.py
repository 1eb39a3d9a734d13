"""Prefect task: ingest DICOM sources (wraps :func:`medseg.stages.ingest.run_ingest_stage`)."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from medseg.config import MedsegConfig
from medseg.stages.ingest import run_ingest_stage
from medseg.stages.outcome import StageOutcome
from medseg.tasks.common import RETRY_DELAYS, RETRY_JITTER, log_outcome, retry_on_transient
from medseg.tasks.dashboard import dashboard_artifact
from medseg.tasks.progress import TaskProgress


@task(name="ingest", tags=["medseg", "ingest"], retries=2, retry_delay_seconds=RETRY_DELAYS,
      retry_jitter_factor=RETRY_JITTER,
      retry_condition_fn=retry_on_transient, cache_policy=NO_CACHE)
def ingest_task(cfg: MedsegConfig, force: bool = False) -> StageOutcome:
    """Index new files, assemble and write new/changed series; skipped when the sources are unchanged."""
    with dashboard_artifact("ingest"):
        return log_outcome(run_ingest_stage(cfg, progress=TaskProgress("ingest"), force=force))
