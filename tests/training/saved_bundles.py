"""Saved bundles with given validation Dice per case (for the bundle and promotion tests)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from phantom_data import make_plan

from medseg.training.bundle import save_bundle
from medseg.training.network import build_segmenter
from medseg.workspace import Workspace


def save(
    ws: Workspace,
    per_case: dict[str, dict[str, float]],
    family: str = "cnn",
    seed: int = 0,
    plan_filters: tuple[int, ...] = (4, 8, 16, 32),
    stopped_reason: str = "iteration_budget",
) -> Path:
    torch.manual_seed(seed)
    plan = make_plan(filters=plan_filters)
    net = build_segmenter(plan, deep_supervision=True)
    classes = ["organ", "lesion"]
    per_class = {c: float(np.mean([d[c] for d in per_case.values()])) for c in classes}
    validation: dict[str, Any] = {
        "mean_dice": float(np.mean(list(per_class.values()))),
        "mean_dice_per_class": per_class,
        "dice_per_case": per_case,
        "epoch": 0,
    }
    return save_bundle(
        ws,
        family,
        plan,
        net.state_dict(),
        deep_supervision=True,
        validation=validation,
        training={"epochs": 1, "iterations": 10, "stopped_reason": stopped_reason},
        train_cases=["case000"],
        val_cases=sorted(per_case),
        history=[{"epoch": 0, "loss": 1.0, "val_mean_dice": validation["mean_dice"]}],
    )


def dice(v: float) -> dict[str, float]:
    return {"organ": v, "lesion": v}


def save_ensemble(ws: Workspace, per_case: dict[str, dict[str, float]], folds: int = 2, seed: int = 0) -> Path:
    """A ``folds``-fold ensemble bundle (random weights) whose pooled cross-validation Dice is ``per_case``."""
    from medseg.training.bundle import FoldModel, save_ensemble_bundle

    plan = make_plan()
    cases = sorted(per_case)
    members = []
    for i in range(folds):
        torch.manual_seed(seed * 100 + i)
        held = cases[i::folds]
        members.append(FoldModel(
            state_dict=build_segmenter(plan, deep_supervision=True).state_dict(),
            history=[{"epoch": 0, "loss": 1.0}],
            train_cases=[c for c in cases if c not in held], val_cases=held,
            validation={"dice_per_case": {c: per_case[c] for c in held}},
            training={"fold": i, "stopped_reason": "iteration_budget"},
        ))
    classes = ["organ", "lesion"]
    per_class = {c: float(np.mean([d[c] for d in per_case.values()])) for c in classes}
    validation = {"mean_dice": float(np.mean(list(per_class.values()))), "mean_dice_per_class": per_class,
                  "dice_per_case": per_case, "cases": cases}
    return save_ensemble_bundle(
        ws, "cnn", plan, members, deep_supervision=True, validation=validation,
        training={"folds": folds, "stopped_reason": "iteration_budget"},
        cv_metrics={"folds": folds, "per_fold": [], "pooled": validation},
    )
