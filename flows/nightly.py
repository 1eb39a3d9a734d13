"""Nightly retrain flow (and the batch-infer flow it shares its inference step with).

incremental ingest of the watched sources → (nothing new: stop, say so) → drift check of the new
cases against the plan's training cases → preprocess with the frozen plan → warm-start (or full)
training of each family within the time budget; the train stage evaluates challenger vs champion on
the fixed validation cases and promotes a better one (unless more than ``ops.drift_max_share`` of the
new cases are out of distribution: then no promotion, and the headline says why) → inference of every
ingested case the champion has not predicted yet → prediction QA of those predictions (no ground truth
needed: new studies are unlabeled) → report (with the drift and QA sections) on the held-out labeled cases.

Champion bundles are verified first, so a corrupt bundle fails the run before anything changes.
Every stage task retries transient errors (backoff + jitter) and fails fast on permanent ones;
a failed run posts to ``ops.webhook_url``.
"""

from __future__ import annotations

import time
from typing import Any

from prefect import flow

from medseg.config import MedsegConfig, ModelFamily
from medseg.ops.nightly import (
    NOTHING_NEW,
    changes_of,
    drift_hold,
    nightly_config,
    nothing_new_result,
    pending_cases,
)
from medseg.ops.params import resolve_config
from medseg.ops.summary import markdown_table, stage_rows, totals_row, write_run_summary
from medseg.runtime.run_id import new_run_id
from medseg.splits import Splits
from medseg.stages.outcome import StageOutcome
from medseg.tasks.common import run_logger, with_transient_retries
from medseg.tasks.drift import drift_task
from medseg.tasks.infer import infer_task
from medseg.tasks.ingest import ingest_task
from medseg.tasks.notify import FAILURE_HOOKS
from medseg.tasks.ops import artifact_key, check_champions_task, publish_table
from medseg.tasks.preprocess import preprocess_task
from medseg.tasks.qa import qa_task
from medseg.tasks.report import report_task
from medseg.tasks.train import train_task
from medseg.workspace import Workspace


def _infer_pending(cfg: MedsegConfig, families: list[ModelFamily]) -> tuple[list[StageOutcome], dict[str, str]]:
    """Predict, with each family's champion, the ingested cases it has not predicted yet."""
    ws = Workspace.at(cfg.workspace)
    infer = with_transient_retries(infer_task, cfg.ops.transient_retries, cfg.ops.retry_backoff_s)
    outcomes: list[StageOutcome] = []
    predictions: dict[str, str] = {}
    for family in families:
        cases = pending_cases(ws, family.value)
        if not cases:
            outcomes.append(StageOutcome(stage=f"infer-{family.value}", skipped=True,
                                         reason="every ingested case already predicted by the champion"))
            continue
        outcome = infer(cfg, family, cases="pending")  # the stage resolves the list itself (may be long)
        outcomes.append(outcome)
        predictions[family.value] = outcome.outputs[0]
    return outcomes, predictions


def _report(cfg: MedsegConfig, predictions: dict[str, str], run_id: str) -> StageOutcome | None:
    """Metrics report on the held-out test cases (never trained on); None when there is nothing to evaluate."""
    if not predictions:
        return None
    splits_path = Workspace.at(cfg.workspace).splits_path
    held_out = Splits.load(splits_path).test if splits_path.is_file() else None
    try:
        return report_task(cfg, predictions, run_id, cases=held_out)
    except FileNotFoundError as exc:  # predictions of unlabeled studies only: nothing to evaluate
        run_logger().info("no metrics report: %s", exc)
        return None


def _publish(cfg: MedsegConfig, run_id: str, title: str, headline: str, outcomes: list[StageOutcome],
             extra: dict[str, Any]) -> dict[str, Any]:
    rows = stage_rows(outcomes)
    ws = Workspace.at(cfg.workspace)
    md_path, json_path = write_run_summary(ws.reports_dir / run_id, title, headline, rows, extra)
    key = artifact_key(cfg.name, "nightly")
    publish_table(f"{key}-stages", [*rows, totals_row(rows)], f"{title}: per-stage timings and counts",
                  markdown=f"# {title}\n\n{headline}\n\n{markdown_table([*rows, totals_row(rows)])}")
    return {"table": rows, "summary_md": str(md_path), "summary_json": str(json_path)}


@flow(name="medseg-nightly-retrain", log_prints=True, on_failure=FAILURE_HOOKS, on_crashed=FAILURE_HOOKS)
def nightly_flow(
    config: MedsegConfig | dict[str, Any] | None = None,
    config_path: str | None = None,
    overrides: list[str] | None = None,
    run_id: str | None = None,
) -> dict[str, Any]:
    """Retrain on what arrived since the last night; see the module docstring.

    Args:
        config: the :class:`~medseg.config.MedsegConfig` as a dict, or
        config_path: a YAML config file (deployments), with ``overrides`` (``key=value`` items).
        run_id: report folder name (default ``nightly-<UTC timestamp>``).

    Returns:
        ``status`` ("nothing new" or "retrained"), ``message``, ``stages`` (brief outcomes),
        ``table`` (per-stage timings/counts), ``champions`` and the report paths.
    """
    t0 = time.perf_counter()
    cfg = nightly_config(resolve_config(config, config_path, overrides))
    run_id = run_id or new_run_id("nightly")
    log = run_logger()
    retry = cfg.ops.transient_retries, cfg.ops.retry_backoff_s
    champions_before = check_champions_task(cfg)
    ingest = with_transient_retries(ingest_task, *retry)(cfg)
    if not changes_of(ingest):
        quiet = nothing_new_result(run_id, ingest, time.perf_counter() - t0)
        log.info(quiet["message"])
        quiet.update(_publish(cfg, run_id, f"medseg nightly {run_id}: {NOTHING_NEW}", quiet["message"],
                               [ingest], {"status": NOTHING_NEW}))
        quiet["champions"] = champions_before
        return quiet
    drift = with_transient_retries(drift_task, *retry)(cfg, run_id, ingest_run=str(ingest.stats["run_id"]))
    hold = drift_hold(drift, cfg.ops.drift_max_share)
    outcomes: list[StageOutcome] = [ingest, drift, with_transient_retries(preprocess_task, *retry)(cfg)]
    train = with_transient_retries(train_task, *retry)
    for family in cfg.train.models:
        outcomes.append(train(cfg, family, hold_promotion=hold))
    inferred, predictions = _infer_pending(cfg, list(cfg.train.models))
    outcomes += inferred
    qa = qa_task(cfg, predictions, run_id) if predictions else None
    if qa is not None:
        outcomes.append(qa)
    report = _report(cfg, predictions, run_id)
    if report is not None:
        outcomes.append(report)
    champions_after = check_champions_task(cfg)
    promoted = [o.stage.removeprefix("train-") for o in outcomes if o.stage.startswith("train-")
                and o.stats.get("promoted")]
    headline = (f"retrained on new data ({', '.join(f'{k}={v}' for k, v in changes_of(ingest).items())}); "
                f"promoted: {', '.join(promoted) or 'none'}" + (f" (promotion held: {hold})" if hold else ""))
    log.info(headline)
    result: dict[str, Any] = {
        "run_id": run_id,
        "status": "retrained",
        "message": headline,
        "stages": [o.brief() for o in outcomes],
        "champions_before": champions_before,
        "champions": champions_after,
        "report": report.outputs[0] if report is not None else None,
        "drift": drift.outputs[0] if drift.outputs else None,
        "promotion_held": hold,
        "qa": qa.outputs[0] if qa is not None else None,
        "qa_flagged": qa.stats["flagged"] if qa is not None else 0,
        "seconds": round(time.perf_counter() - t0, 3),
    }
    result.update(_publish(cfg, run_id, f"medseg nightly {run_id}", headline, outcomes,
                           {"status": "retrained", "champions": champions_after, "promotion_held": hold}))
    return result


@flow(name="medseg-batch-infer", log_prints=True, on_failure=FAILURE_HOOKS, on_crashed=FAILURE_HOOKS)
def batch_infer_flow(
    config: MedsegConfig | dict[str, Any] | None = None,
    config_path: str | None = None,
    overrides: list[str] | None = None,
    families: list[str] | None = None,
) -> dict[str, Any]:
    """Predict every ingested case that the champion of each family (default: ``train.models``) has not yet, then
    QA the predictions (``reports/batch-infer-<time>/qa.*``)."""
    cfg = resolve_config(config, config_path, overrides)
    selected = [ModelFamily(f) for f in families] if families else list(cfg.train.models)
    check_champions_task(cfg)
    outcomes, predictions = _infer_pending(cfg, selected)
    qa = qa_task(cfg, predictions, new_run_id("batch-infer")) if predictions else None
    if qa is not None:
        outcomes.append(qa)
    return {"stages": [o.brief() for o in outcomes], "predictions": predictions,
            "qa": qa.outputs[0] if qa is not None else None}


__all__ = ["batch_infer_flow", "nightly_flow"]
