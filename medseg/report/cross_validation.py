"""The report's cross-validation table: per fold and pooled Dice of k-fold ensemble models.

Rows come from the bundles' ``cv_metrics.json`` (:func:`medseg.io.bundle.read_cv_metrics`): one row
per fold (its held-out cases) and one ``pooled`` row over every out-of-fold case.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any


def _dice(value: Any) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{float(value):.3f}"


def cv_rows(cv_by_model: Mapping[str, Mapping[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """``(headers, rows)`` of the table: model, fold, held-out cases, mean Dice, then Dice per class."""
    classes = sorted({
        name for cv in cv_by_model.values() for name in ((cv.get("pooled") or {}).get("mean_dice_per_class") or {})
    })
    headers = ["model", "fold", "held-out cases", "mean Dice", *[f"Dice {c}" for c in classes]]
    rows: list[list[str]] = []
    for model, cv in cv_by_model.items():
        parts = [(str(f.get("fold")), f, len(f.get("val_cases") or [])) for f in cv.get("per_fold") or []]
        pooled = cv.get("pooled") or {}
        parts.append(("pooled", pooled, len(pooled.get("cases") or [])))
        for fold, scores, n in parts:
            per_class = scores.get("mean_dice_per_class") or {}
            dice = [_dice(per_class.get(c)) for c in classes]
            rows.append([model, fold, str(n), _dice(scores.get("mean_dice")), *dice])
    return headers, rows
