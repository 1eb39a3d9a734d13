"""k-fold cross-validation (``train.folds`` = k > 1): k models, one ensemble bundle, CV metrics.

As nnU-Net does it: the non-test cases (``splits.train`` + ``splits.val``; the test split stays held
out from every fold) are split by case into k folds with a fixed seed
(:func:`medseg.splits.make_folds`); fold i trains on the other folds and validates on its held-out
part. The folds train one after the other, each exactly like a single run (same loop, iteration
budget and validation), seeded with ``seed + i`` so every fold's weights are bit-identical on any
machine and after a resume. ``train.max_minutes`` caps the whole run: fold i gets the time left
divided by the folds left (a fold that finishes early leaves its time to the next ones); so does
``train.fit_minutes`` (each fold plans its iterations to its share).

The k best-epoch models become one ensemble bundle (:func:`medseg.training.bundle.save_ensemble_bundle`)
with ``cv_metrics.json``: every fold's validation and the scores pooled over the out-of-fold cases
(each non-test case scored once, by the fold that did not train on it). The pooled scores are the
bundle's ``validation``, so promotion compares ensembles on cross-validation Dice.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from medseg.config import MedsegConfig, TrainConfig
from medseg.io.bundle import CV_METRICS_FILE
from medseg.plan import Plan
from medseg.splits import Fold, make_folds
from medseg.training.budget import StopReason
from medseg.training.bundle import FoldModel, save_ensemble_bundle
from medseg.training.checkpoint import BEST, LAST
from medseg.training.device import configure_threads, resolve_device
from medseg.training.loop import Progress
from medseg.training.train import (
    TrainResult,
    load_splits,
    remove_run_dir,
    run_dir_for,
    run_key,
    train_on_split,
    training_record,
)
from medseg.training.validate import postprocess_classes, summarise
from medseg.training.warm_start import WarmStart
from medseg.workspace import Workspace

log = logging.getLogger(__name__)


def fold_seed(seed: int, fold: int) -> int:
    """The seed of fold ``fold`` (fold 0 uses the run's seed)."""
    return seed + fold


def fold_time_cap(max_minutes: float | None, spent_seconds: float, folds_left: int) -> float | None:
    """Minutes fold may run: the run's cap minus what earlier folds used, shared by the folds left.

    None without a cap. Never 0 (a config needs > 0): an exhausted budget gives a cap the first
    iteration check fires on.
    """
    if max_minutes is None:
        return None
    left = max_minutes - spent_seconds / 60.0
    return max(left / max(folds_left, 1), 1e-6)


def fold_progress(progress: Progress | None, fold: int, folds: int) -> Progress | None:
    """Events of fold ``fold`` with ``fold``/``folds`` added and iterations counted over the whole run."""
    if progress is None:
        return None

    def emit(event: dict[str, Any]) -> None:
        out = {**event, "fold": fold, "folds": folds}
        if "total_iterations" in event and "global_iteration" in event:
            per_fold = int(event["total_iterations"])
            out["global_iteration"] = fold * per_fold + int(event["global_iteration"])
            out["total_iterations"] = folds * per_fold
        progress(out)

    return emit


def pooled_validation(fold_validations: list[dict[str, Any]], label_names: dict[int, str]) -> dict[str, Any]:
    """Scores over the out-of-fold cases of all folds (``ValidationResult.to_dict()`` shape + ``cases``).

    Dice per case comes from each case's own fold; the per-class means, as in validation, leave NaN
    (class absent from prediction and reference) out. ``largest_component`` means are the folds'
    means weighted by their number of held-out cases (the per-case values are not kept).
    """
    names = [label_names[c] for c in sorted(label_names)]
    per_case: dict[str, dict[str, float]] = {}
    for v in fold_validations:
        for case, d in (v.get("dice_per_case") or {}).items():
            per_case[case] = {n: (math.nan if d.get(n) is None else float(d[n])) for n in names}
    out = summarise(per_case, names).to_dict()
    lcc: dict[str, float | None] = {}
    for name in names:
        pairs = [((v.get("largest_component") or {}).get("mean_dice_per_class") or {}).get(name)
                 for v in fold_validations]
        weights = [len(v.get("dice_per_case") or {}) for v in fold_validations]
        kept = [(float(p), w) for p, w in zip(pairs, weights, strict=True) if p is not None and w > 0]
        lcc[name] = float(np.average([p for p, _ in kept], weights=[w for _, w in kept])) if kept else None
    finite = [x for x in lcc.values() if x is not None]
    out["largest_component"] = {"mean_dice": float(np.mean(finite)) if finite else None, "mean_dice_per_class": lcc}
    out["cases"] = sorted(per_case)
    out["source"] = "cross_validation"
    return out


def cv_metrics(folds: list[Fold], validations: list[dict[str, Any]], pooled: dict[str, Any],
               trainings: list[dict[str, Any]], seed: int) -> dict[str, Any]:
    """Content of ``cv_metrics.json``: per fold (cases, scores, budget) and pooled, plus the mean over folds."""
    fold_means = [v.get("mean_dice") for v in validations]
    finite = [float(m) for m in fold_means if m is not None]
    return {
        "folds": len(folds),
        "seed": seed,
        "split": "by case, seeded hash dealt round-robin (medseg.splits.make_folds); test split excluded",
        "per_fold": [
            {"fold": f.index, "seed": fold_seed(seed, f.index), "train_cases": f.train, "val_cases": f.val,
             "mean_dice": v.get("mean_dice"), "mean_dice_per_class": v.get("mean_dice_per_class"),
             "dice_per_case": v.get("dice_per_case"), "best_epoch": v.get("epoch"),
             "iterations": t.get("iterations"), "stopped_reason": t.get("stopped_reason")}
            for f, v, t in zip(folds, validations, trainings, strict=True)
        ],
        "pooled": pooled,
        "fold_mean_dice": {"mean": float(np.mean(finite)) if finite else None,
                           "std": float(np.std(finite)) if finite else None},
    }


def _whole_run(trainings: list[dict[str, Any]], tcfg: TrainConfig, folds: int) -> dict[str, Any]:
    """``training`` metadata of the ensemble: sums over folds, the first stop reason that is not the budget."""
    capped = [t for t in trainings if t["stopped_reason"] == StopReason.TIME_CAP]
    return {
        "folds": folds,
        "epochs": sum(int(t["epochs"]) for t in trainings),
        "iterations": sum(int(t["iterations"]) for t in trainings),
        "seconds": sum(float(t["seconds"]) for t in trainings),
        "planned_iterations": folds * tcfg.max_epochs * tcfg.iterations_per_epoch,
        "stopped_reason": StopReason.TIME_CAP.value if capped else StopReason.ITERATION_BUDGET.value,
        "time_capped": bool(capped),
        "max_minutes": tcfg.max_minutes,
        "config": tcfg.model_dump(mode="json"),
        "warnings": [f"fold {i}: {w}" for i, t in enumerate(trainings) for w in t.get("warnings", [])],
        "per_fold": trainings,
    }


def train_folds(
    ws: Workspace,
    cfg: MedsegConfig,
    family: str,
    device: str | None = None,
    progress: Progress | None = None,
    clock: Callable[[], float] = time.time,
) -> TrainResult:
    """Train ``cfg.train.folds`` models of ``family`` by k-fold cross-validation into one ensemble bundle.

    Same arguments and errors as :func:`medseg.training.train.train_model`; the result's ``val_*`` are
    the pooled cross-validation scores and ``cv_metrics_path`` names the bundle's ``cv_metrics.json``.
    ``train.warm_start`` is not used (every fold trains from scratch; the reason is recorded).
    """
    started = clock()
    tcfg = cfg.train
    k = tcfg.folds
    plan: Plan = Plan.load(ws.plan_path)
    splits = load_splits(ws)
    folds = make_folds(list(splits.train) + list(splits.val), k, cfg.seed)
    warm = WarmStart(f"train.folds={k}: every fold trains from scratch (warm start is for single models)")
    if tcfg.warm_start:
        log.info(warm.reason)
    configure_threads(tcfg)
    dev = resolve_device(device if device is not None else tcfg.device)
    key = run_key(family, plan, splits, cfg)
    run_root = run_dir_for(ws, family, key)
    members: list[FoldModel] = []
    trainings: list[dict[str, Any]] = []
    spent = 0.0
    for fold in folds:
        fcfg = tcfg.model_copy(update={"max_minutes": fold_time_cap(tcfg.max_minutes, spent, k - fold.index),
                                       "fit_minutes": fold_time_cap(tcfg.fit_minutes, spent, k - fold.index)})
        run_dir = run_root / f"fold_{fold.index}"
        log.info("%s fold %d/%d: %d train, %d validation cases", family, fold.index + 1, k, len(fold.train),
                 len(fold.val))
        run = train_on_split(
            ws, family, plan, fcfg, fold.train, fold.val, fold_seed(cfg.seed, fold.index), dev, run_dir,
            {"run_key": key, "fold": fold.index, "folds": k}, warm, fold_progress(progress, fold.index, k),
        )
        state, best = run.state, run.best
        spent += state.elapsed + (run.fitted_budget or {}).get("measure_seconds", 0.0)
        training = {"fold": fold.index, **training_record(run, dev, fold_seed(cfg.seed, fold.index), key, warm)}
        trainings.append(training)
        members.append(FoldModel(
            state_dict=best["model"], history=state.history, train_cases=fold.train, val_cases=fold.val,
            validation=dict(best["validation"]), training=training,
            checkpoint_files={BEST: run_dir / BEST, LAST: run_dir / LAST},
        ))
    validations = [m.validation for m in members]
    pooled = pooled_validation(validations, plan.label_names)
    training = {**_whole_run(trainings, tcfg, k), "wall_seconds_this_session": clock() - started}
    bundle_path = save_ensemble_bundle(
        ws, family, plan, members,
        deep_supervision=tcfg.deep_supervision,
        validation=pooled,
        training=training,
        cv_metrics=cv_metrics(folds, validations, pooled, trainings, cfg.seed),
        postprocessing={"keep_largest_component": postprocess_classes(pooled, plan.label_names)},
    )
    remove_run_dir(run_root)
    return TrainResult(
        family=family,
        bundle_path=bundle_path,
        version=bundle_path.name,
        val_mean_dice=pooled.get("mean_dice"),
        val_dice_per_class=dict(pooled.get("mean_dice_per_class") or {}),
        epochs=int(training["epochs"]),
        iterations=int(training["iterations"]),
        seconds=float(training["seconds"]),
        stopped_reason=str(training["stopped_reason"]),
        planned_iterations=int(training["planned_iterations"]),
        best_epoch=-1,
        device=str(dev),
        warnings=list(training["warnings"]),
        warm_start_reason=warm.reason,
        folds=k,
        cv_metrics_path=bundle_path / CV_METRICS_FILE,
    )
