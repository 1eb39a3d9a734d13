"""Single-stage flows behind the CLI's stage commands (each a flow run visible in the Prefect UI)."""

from __future__ import annotations

from typing import Any

from prefect import flow

from medseg.config import MedsegConfig, ModelFamily
from medseg.tasks.infer import infer_task
from medseg.tasks.ingest import ingest_task
from medseg.tasks.notify import FAILURE_HOOKS
from medseg.tasks.preprocess import preprocess_task
from medseg.tasks.report import report_task
from medseg.tasks.train import train_task


@flow(name="medseg-ingest", on_failure=FAILURE_HOOKS, on_crashed=FAILURE_HOOKS)
def ingest_flow(config: MedsegConfig | dict[str, Any], force: bool = False) -> dict[str, Any]:
    return ingest_task(MedsegConfig.model_validate(config), force=force).brief()


@flow(name="medseg-preprocess", on_failure=FAILURE_HOOKS, on_crashed=FAILURE_HOOKS)
def preprocess_flow(config: MedsegConfig | dict[str, Any], force: bool = False) -> dict[str, Any]:
    return preprocess_task(MedsegConfig.model_validate(config), force=force).brief()


@flow(name="medseg-train", on_failure=FAILURE_HOOKS, on_crashed=FAILURE_HOOKS)
def train_flow(config: MedsegConfig | dict[str, Any], families: list[str], force: bool = False) -> list[dict[str, Any]]:
    cfg = MedsegConfig.model_validate(config)
    return [train_task(cfg, ModelFamily(f), force=force).brief() for f in families]


@flow(name="medseg-infer", on_failure=FAILURE_HOOKS, on_crashed=FAILURE_HOOKS)
def infer_flow(config: MedsegConfig | dict[str, Any], families: list[str], case_ids: list[str] | None = None,
               cases: str = "test") -> list[dict[str, Any]]:
    """Predict ``case_ids`` or the ``cases`` selection ("test" split or "pending": no prediction from the champion)."""
    cfg = MedsegConfig.model_validate(config)
    return [infer_task(cfg, ModelFamily(f), case_ids=case_ids, cases=cases).brief() for f in families]


@flow(name="medseg-report", on_failure=FAILURE_HOOKS, on_crashed=FAILURE_HOOKS)
def report_flow(config: MedsegConfig | dict[str, Any], predictions: dict[str, str], run_id: str) -> dict[str, Any]:
    return report_task(MedsegConfig.model_validate(config), predictions, run_id).model_dump(mode="json")
