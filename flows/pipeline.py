"""The end-to-end pipeline flow: ingest → drift check → preprocess → train CNN and GAN → infer held-out cases
→ prediction QA → report."""

from __future__ import annotations

from typing import Any

from prefect import flow

from medseg.config import MedsegConfig
from medseg.ops.params import resolve_config
from medseg.runtime.run_id import new_run_id
from medseg.tasks.drift import drift_task
from medseg.tasks.infer import infer_task
from medseg.tasks.ingest import ingest_task
from medseg.tasks.notify import FAILURE_HOOKS
from medseg.tasks.preprocess import preprocess_task
from medseg.tasks.qa import qa_task
from medseg.tasks.report import report_task
from medseg.tasks.train import train_task


@flow(name="medseg-pipeline", log_prints=True, on_failure=FAILURE_HOOKS, on_crashed=FAILURE_HOOKS)
def pipeline_flow(config: MedsegConfig | dict[str, Any] | None = None, config_path: str | None = None,
                  overrides: list[str] | None = None, force: bool = False,
                  run_id: str | None = None) -> dict[str, Any]:
    """Run every stage; each is skipped when its inputs did not change (unless ``force``).

    Args:
        config: the :class:`~medseg.config.MedsegConfig` (or its JSON dict), or
        config_path: a YAML config file, with ``overrides`` (``key=value`` items).
        force: re-run every stage even when its inputs are unchanged.
        run_id: report folder name (default: UTC timestamp).
    """
    cfg = resolve_config(config, config_path, overrides)
    run_id = run_id or new_run_id()
    ingest = ingest_task(cfg, force=force)
    outcomes = [ingest]
    if not ingest.skipped:  # new cases vs the previous plan's training cases, before preprocess re-plans
        outcomes.append(drift_task(cfg, run_id, ingest_run=str(ingest.stats["run_id"])))
    outcomes.append(preprocess_task(cfg, force=force))
    predictions: dict[str, str] = {}
    for family in cfg.train.models:
        trained = train_task(cfg, family, force=force)
        inferred = infer_task(cfg, family, bundle_path=trained.outputs[0])
        predictions[family.value] = inferred.outputs[0]
        outcomes += [trained, inferred]
    qa = qa_task(cfg, predictions, run_id)
    report = report_task(cfg, predictions, run_id)
    outcomes += [qa, report]
    return {
        "run_id": run_id,
        "stages": [o.brief() for o in outcomes],
        "table": report.stats["table"],
        "report": report.outputs[0],
        "qa": qa.outputs[0],
        "qa_flagged": qa.stats["flagged"],
    }


__all__ = ["pipeline_flow"]
