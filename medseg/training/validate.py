"""Validation during training: sliding-window prediction of whole val cases and Dice per class.

Dice is computed on the preprocessed grid (target spacing) against ``labels/gt``. A class absent
from both the prediction and the reference scores NaN and is left out of means (nnU-Net rule).
Each prediction is also scored with only the largest connected component of each class kept:
:func:`postprocess_classes` picks the classes where that helps, as nnU-Net decides its
postprocessing on validation predictions, and inference applies it (``infer.keep_largest_component=auto``).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from torch import nn

from medseg.config import InferConfig
from medseg.inference.postprocess import keep_largest_component
from medseg.inference.sliding import predict_preprocessed
from medseg.io.case_arrays import open_channels, open_label
from medseg.plan import Plan

log = logging.getLogger(__name__)


def dice_per_class(pred: NDArray[np.integer], gt: NDArray[np.integer], classes: list[int]) -> dict[int, float]:
    """Dice ``2|P∩G| / (|P| + |G|)`` per class of two ``(z, y, x)`` label arrays (NaN when both empty)."""
    if pred.shape != gt.shape:
        raise ValueError(f"prediction shape {pred.shape} != reference shape {gt.shape}")
    out: dict[int, float] = {}
    for c in classes:
        p, g = pred == c, gt == c
        denom = int(p.sum()) + int(g.sum())
        out[c] = float("nan") if denom == 0 else 2.0 * int(np.logical_and(p, g).sum()) / denom
    return out


def _nanmean(values: list[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return float(np.mean(finite)) if finite else float("nan")


@dataclass
class ValidationResult:
    """Dice per case and class (keys: class names), their per-class means and the overall mean.

    ``largest_component``: the same scores with only each class's largest connected component kept.
    """

    per_case: dict[str, dict[str, float]] = field(default_factory=dict)
    per_class: dict[str, float] = field(default_factory=dict)
    mean: float = float("nan")
    largest_component: ValidationResult | None = None

    def to_dict(self) -> dict[str, Any]:
        def clean(v: float) -> float | None:
            return None if math.isnan(v) else float(v)

        out: dict[str, Any] = {
            "mean_dice": clean(self.mean),
            "mean_dice_per_class": {k: clean(v) for k, v in self.per_class.items()},
            "dice_per_case": {c: {k: clean(v) for k, v in d.items()} for c, d in self.per_case.items()},
        }
        if self.largest_component is not None:
            lcc = self.largest_component
            out["largest_component"] = {
                "mean_dice": clean(lcc.mean),
                "mean_dice_per_class": {k: clean(v) for k, v in lcc.per_class.items()},
            }
        return out


def summarise(per_case: dict[str, dict[str, float]], class_names: list[str]) -> ValidationResult:
    """Per-class NaN-aware means over cases and the mean of those."""
    per_class = {name: _nanmean([d[name] for d in per_case.values()]) for name in class_names}
    return ValidationResult(per_case=per_case, per_class=per_class, mean=_nanmean(list(per_class.values())))


def postprocess_classes(validation: dict[str, Any], label_names: dict[int, str]) -> list[int]:
    """Classes whose validation mean Dice is higher with only the largest component kept (from ``to_dict()``).

    Empty when the validation holds no largest-component scores (bundles older than this rule).
    """
    plain = validation.get("mean_dice_per_class") or {}
    lcc = (validation.get("largest_component") or {}).get("mean_dice_per_class") or {}
    out = []
    for value, name in sorted(label_names.items()):
        before, after = plain.get(name), lcc.get(name)
        if before is not None and after is not None and after > before:
            out.append(int(value))
    return out


#: seconds between progress lines of a long validation
LOG_EVERY_S = 10.0


def validate(
    network: nn.Module,
    case_paths: dict[str, Path],
    plan: Plan,
    device: torch.device,
    cfg: InferConfig | None = None,
) -> ValidationResult:
    """Predict every preprocessed val case ``{case_id: store}`` with a sliding window; Dice per class.

    A validation that runs longer than ``LOG_EVERY_S`` logs its progress (cases done, elapsed), so a
    long validation between epochs is not minutes of silence in the run log.
    """
    cfg = cfg or InferConfig(overlap=0.5, sw_batch_size=2, mirror_tta=False)
    classes = sorted(plan.label_names)
    names = [plan.label_names[c] for c in classes]
    per_case: dict[str, dict[str, float]] = {}
    per_case_lcc: dict[str, dict[str, float]] = {}
    started = last_log = time.monotonic()
    for done, (case_id, path) in enumerate(sorted(case_paths.items())):
        if time.monotonic() - last_log >= LOG_EVERY_S:
            last_log = time.monotonic()
            log.info("validation: %d/%d cases in %.0f s", done, len(case_paths), last_log - started)
        channels = [np.asarray(c[...], dtype=np.float32) for c in open_channels(path)]
        image = channels[0] if len(channels) == 1 else np.stack(channels)
        gt = np.asarray(open_label(path)[...])
        probs = predict_preprocessed(network, image, plan, cfg, device)
        pred = probs.argmax(axis=0).astype(np.uint8)
        dice = dice_per_class(pred, gt, classes)
        per_case[case_id] = {plan.label_names[c]: dice[c] for c in classes}
        if pred.ndim == 3:
            keep_largest_component(pred, classes)
            dice = dice_per_class(pred, gt, classes)
        per_case_lcc[case_id] = {plan.label_names[c]: dice[c] for c in classes}
    result = summarise(per_case, names)
    result.largest_component = summarise(per_case_lcc, names)
    return result
