"""medseg.report.cross_validation: the per-fold and pooled Dice table of ensemble models."""

from __future__ import annotations

from medseg.report.cross_validation import cv_rows


def test_one_row_per_fold_and_a_pooled_row() -> None:
    cv = {
        "per_fold": [
            {"fold": 0, "val_cases": ["a", "b"], "mean_dice": 0.5,
             "mean_dice_per_class": {"organ": 0.6, "lesion": None}},
            {"fold": 1, "val_cases": ["c"], "mean_dice": 0.7, "mean_dice_per_class": {"organ": 0.8, "lesion": 0.6}},
        ],
        "pooled": {"cases": ["a", "b", "c"], "mean_dice": 0.65, "mean_dice_per_class": {"organ": 0.7, "lesion": 0.6}},
    }
    headers, rows = cv_rows({"cnn": cv})
    assert headers == ["model", "fold", "held-out cases", "mean Dice", "Dice lesion", "Dice organ"]
    assert rows == [
        ["cnn", "0", "2", "0.500", "-", "0.600"],
        ["cnn", "1", "1", "0.700", "0.600", "0.800"],
        ["cnn", "pooled", "3", "0.650", "0.600", "0.700"],
    ]
    assert cv_rows({}) == (["model", "fold", "held-out cases", "mean Dice"], [])
