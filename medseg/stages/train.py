"""Stage 3: train one model family (CNN or GAN) into a new bundle and promote it if it is better.

With ``train.folds`` > 1 the bundle is a k-fold ensemble (:mod:`medseg.training.cross_validation`);
the outcome's stats then add ``folds``, ``cv_mean_dice``, ``cv_dice_per_class``, ``cv_fold_mean_dice``
and ``cv_metrics`` (the path of the bundle's ``cv_metrics.json``).
"""

from __future__ import annotations

import time
from typing import Any

from medseg.config import MedsegConfig, ModelFamily
from medseg.io.bundle import read_cv_metrics
from medseg.plan import Plan
from medseg.splits import Splits
from medseg.stage_record import hash_inputs, save_record, up_to_date
from medseg.stages.outcome import ProgressFn, StageOutcome, event_progress
from medseg.stages.preprocess import stores_key
from medseg.training.bundle import promote
from medseg.training.train import TrainResult, train_model
from medseg.workspace import Workspace


def training_key(ws: Workspace, cfg: MedsegConfig, family: ModelFamily) -> str:
    """Everything a trained model depends on: plan, split, preprocessed data, training config, seed."""
    plan = Plan.load(ws.plan_path)
    splits = Splits.load(ws.splits_path)
    return hash_inputs("train", family.value, plan.plan_hash(), splits.model_dump(),
                       stores_key(ws.preprocessed_dir / "cases"), train_stage_config(cfg), cfg.seed)


def train_stage_config(cfg: MedsegConfig) -> dict[str, object]:
    """``cfg.train`` as JSON for the stage key (``folds`` only when > 1: single-model keys are unchanged)."""
    data = cfg.train.model_dump(mode="json")
    if data.get("folds") == 1:
        del data["folds"]
    return data


def cv_stats(result: TrainResult) -> dict[str, Any]:
    """Stage stats of a k-fold ensemble: folds, pooled CV Dice per class, per-fold Dice, the CV file."""
    cv = read_cv_metrics(result.bundle_path)
    return {
        "folds": result.folds,
        "cv_mean_dice": (cv.get("pooled") or {}).get("mean_dice"),
        "cv_dice_per_class": (cv.get("pooled") or {}).get("mean_dice_per_class"),
        "cv_fold_mean_dice": [f.get("mean_dice") for f in cv.get("per_fold", [])],
        "cv_metrics": str(result.cv_metrics_path),
    }


def run_train_stage(cfg: MedsegConfig, family: ModelFamily, force: bool = False,
                    progress: ProgressFn | None = None, hold_promotion: str | None = None) -> StageOutcome:
    """Train ``family`` and promote the bundle if it beats the champion.

    ``hold_promotion``: why the new bundle must not be promoted, whatever its score (the nightly drift
    gate). It is kept in the registry, the stats say ``promotion_held`` and a warning, and the stage key
    records the hold, so a later run without one trains again and may promote (e.g. ``medseg train``
    after the drift was reviewed).
    """
    started = time.time()
    stage = f"train-{family.value}"
    ws = Workspace.at(cfg.workspace).ensure()
    if not ws.plan_path.is_file():
        raise FileNotFoundError(f"no plan at {ws.plan_path}: run `medseg preprocess` first")
    key = training_key(ws, cfg, family)
    if hold_promotion is not None:
        key = hash_inputs(key, "promotion held")
    rec = None if force else up_to_date(ws, stage, key)
    if rec is not None:
        return StageOutcome(stage=stage, skipped=True, reason="same data, plan and training config as the last model",
                            stats=rec.stats, outputs=rec.outputs)
    result = train_model(ws, cfg, family, progress=event_progress(progress, family.value))

    held = hold_promotion is not None
    promoted = False if held else promote(ws, family.value, result.bundle_path, allow_capped=cfg.train.promote_capped)
    warnings = list(result.warnings) + ([f"not promoted: {hold_promotion}"] if held else [])
    stats: dict[str, Any] = {
        "version": result.version,
        "val_mean_dice": result.val_mean_dice,
        "epochs": result.epochs,
        "iterations": result.iterations,
        "planned_iterations": result.planned_iterations,
        "best_epoch": result.best_epoch,
        "stopped": result.stopped_reason,
        "time_capped": result.time_capped,
        "device": result.device,
        "promoted": promoted,
        "warnings": warnings,
        "resumed_from_epoch": result.resumed_from_epoch,
        "warm_started_from": result.warm_started_from,
        "warm_start_reason": result.warm_start_reason,
    }
    if held:
        stats["promotion_held"] = hold_promotion
    if result.folds > 1:  # k-fold ensemble: val_mean_dice is the pooled cross-validation Dice
        stats.update(cv_stats(result))
    rec = save_record(ws, stage, key, [result.bundle_path], stats, started)
    return StageOutcome(stage=stage, seconds=rec.seconds, stats=stats, outputs=rec.outputs)
