"""Prefect task: ingest inputs and predict them (wraps :func:`medseg.stages.predict.run_predict_stage`)."""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from medseg.config import MedsegConfig
from medseg.stages.outcome import StageOutcome
from medseg.stages.predict import run_predict_stage
from medseg.tasks.common import RETRY_DELAYS, RETRY_JITTER, log_outcome, retry_on_transient
from medseg.tasks.dashboard import dashboard_artifact
from medseg.tasks.progress import TaskProgress


@task(name="predict", tags=["medseg", "infer"], retries=2, retry_delay_seconds=RETRY_DELAYS,
      retry_jitter_factor=RETRY_JITTER, retry_condition_fn=retry_on_transient, cache_policy=NO_CACHE)
def predict_task(cfg: MedsegConfig, inputs: list[str], output: str, model: str, formats: str = "nifti,dicom-seg",
                 keep_names: bool = False, temporary_workspace: bool = True) -> StageOutcome:
    """Ingest ``inputs`` (DICOM folders, NIfTI/NRRD files) and predict every case of them into ``output``."""
    with dashboard_artifact("predict"):
        return log_outcome(run_predict_stage(cfg, inputs, output, model, formats, keep_names=keep_names,
                                             temporary_workspace=temporary_workspace, progress=TaskProgress("predict")))
