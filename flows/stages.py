"""Single-stage flows behind the CLI's stage commands (each a flow run visible in the Prefect UI).

Every flow takes its config as ``config`` (a :class:`MedsegConfig`, or its JSON dict) or
``config_path`` (a YAML file) with ``overrides``; see :func:`medseg.ops.params.resolve_config`.
"""

from __future__ import annotations

from typing import Any

from prefect import flow

from medseg.config import MedsegConfig, ModelFamily
from medseg.ops.params import resolve_config
from medseg.runtime.run_id import new_run_id
from medseg.tasks.drift import drift_task
from medseg.tasks.infer import infer_task
from medseg.tasks.ingest import ingest_task
from medseg.tasks.notify import FAILURE_HOOKS
from medseg.tasks.predict import predict_task
from medseg.tasks.preprocess import preprocess_task
from medseg.tasks.qa import qa_task
from medseg.tasks.report import report_task
from medseg.tasks.train import train_task

ConfigParam = MedsegConfig | dict[str, Any] | None


def _families(cfg: MedsegConfig, families: list[str] | None) -> list[ModelFamily]:
    return [ModelFamily(f) for f in families] if families is not None else list(cfg.train.models)


@flow(name="medseg-ingest", on_failure=FAILURE_HOOKS, on_crashed=FAILURE_HOOKS)
def ingest_flow(config: ConfigParam = None, config_path: str | None = None, overrides: list[str] | None = None,
                force: bool = False) -> list[dict[str, Any]]:
    """Ingest, then check the new and changed cases for drift (``reports/<ingest run id>/drift.md``)."""
    cfg = resolve_config(config, config_path, overrides)
    ingest = ingest_task(cfg, force=force)
    outcomes = [ingest]
    if not ingest.skipped:
        ingest_run = str(ingest.stats["run_id"])
        outcomes.append(drift_task(cfg, ingest_run, ingest_run=ingest_run))
    return [o.brief() for o in outcomes]


@flow(name="medseg-preprocess", on_failure=FAILURE_HOOKS, on_crashed=FAILURE_HOOKS)
def preprocess_flow(config: ConfigParam = None, config_path: str | None = None, overrides: list[str] | None = None,
                    force: bool = False) -> dict[str, Any]:
    return preprocess_task(resolve_config(config, config_path, overrides), force=force).brief()


@flow(name="medseg-train", on_failure=FAILURE_HOOKS, on_crashed=FAILURE_HOOKS)
def train_flow(config: ConfigParam = None, config_path: str | None = None, overrides: list[str] | None = None,
               families: list[str] | None = None, force: bool = False) -> list[dict[str, Any]]:
    """Train ``families`` (default: ``train.models``)."""
    cfg = resolve_config(config, config_path, overrides)
    return [train_task(cfg, f, force=force).brief() for f in _families(cfg, families)]


@flow(name="medseg-infer", on_failure=FAILURE_HOOKS, on_crashed=FAILURE_HOOKS)
def infer_flow(config: ConfigParam = None, config_path: str | None = None, overrides: list[str] | None = None,
               families: list[str] | None = None, case_ids: list[str] | None = None,
               cases: str = "test", run_id: str | None = None) -> list[dict[str, Any]]:
    """Predict ``case_ids`` or the ``cases`` selection ("test" split or "pending": no prediction from the champion),
    then QA the models' predictions (of ``case_ids`` only, when given) into ``reports/<run_id>/qa.*``; the last
    outcome is the QA's."""
    cfg = resolve_config(config, config_path, overrides)
    selected = _families(cfg, families)
    inferred = [infer_task(cfg, f, case_ids=case_ids, cases=cases) for f in selected]
    predictions = {f.value: o.outputs[0] for f, o in zip(selected, inferred, strict=True)}
    qa = qa_task(cfg, predictions, run_id or new_run_id("infer"), cases=case_ids)
    return [o.brief() for o in [*inferred, qa]]


@flow(name="medseg-predict", on_failure=FAILURE_HOOKS, on_crashed=FAILURE_HOOKS)
def predict_flow(config: ConfigParam = None, config_path: str | None = None, overrides: list[str] | None = None,
                 inputs: list[str] | None = None, output: str | None = None, model: str = "cnn",
                 formats: str = "nifti,dicom-seg", keep_names: bool = False,
                 temporary_workspace: bool = True) -> dict[str, Any]:
    """Ingest ``inputs`` (DICOM folders, NIfTI/NRRD files) and predict every case of them into ``output`` with
    ``model`` (a family's champion or a bundle folder); the outcome's ``stats["problems"]`` says what failed."""
    if not inputs or output is None:
        raise ValueError("predict_flow needs `inputs` (DICOM folders / NIfTI or NRRD files) and `output` (a folder)")
    cfg = resolve_config(config, config_path, overrides)
    return predict_task(cfg, list(inputs), output, model, formats, keep_names=keep_names,
                        temporary_workspace=temporary_workspace).model_dump(mode="json")


@flow(name="medseg-report", on_failure=FAILURE_HOOKS, on_crashed=FAILURE_HOOKS)
def report_flow(config: ConfigParam = None, config_path: str | None = None, overrides: list[str] | None = None,
                predictions: dict[str, str] | None = None, run_id: str | None = None) -> dict[str, Any]:
    """Report on ``predictions`` (model family -> predictions folder) into ``reports/<run_id>``
    (default: a new run id)."""
    if predictions is None:
        raise ValueError("report_flow needs `predictions` (model family -> predictions folder)")
    cfg = resolve_config(config, config_path, overrides)
    return report_task(cfg, predictions, run_id or new_run_id()).model_dump(mode="json")
