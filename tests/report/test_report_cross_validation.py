"""medseg.report.cross_validation: the per-fold and pooled Dice table of ensemble models."""

from __future__ import annotations

from pathlib import Path

import numpy as np

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


def test_the_report_shows_the_table_only_for_ensemble_models(tmp_path: Path) -> None:
    from medseg.evaluation.summary import CasePair, evaluate_cases
    from medseg.report.build import build_report

    gt = np.zeros((4, 16, 16), dtype=np.uint8)
    gt[1:3, 4:12, 4:12] = 1
    summary = evaluate_cases([CasePair("case0", pred=gt.copy(), gt=gt, spacing=(2.0, 1.0, 1.0))], {1: "organ"})
    cv = {"per_fold": [{"fold": 0, "val_cases": ["a"], "mean_dice": 0.25, "mean_dice_per_class": {"organ": 0.25}}],
          "pooled": {"cases": ["a"], "mean_dice": 0.25, "mean_dice_per_class": {"organ": 0.25}}}
    plain = build_report(tmp_path / "plain", {"cnn": summary}, {}, "t")
    assert "Cross-validation" not in plain.markdown
    rep = build_report(tmp_path / "cv", {"cnn": summary}, {}, "t", cross_validation={"cnn": cv})
    assert "## Cross-validation (training cases, out-of-fold)" in rep.markdown
    assert "| cnn | pooled | 1 | 0.250 | 0.250 |" in rep.markdown
    assert "Cross-validation" in rep.html_path.read_text()
