"""medseg.evaluation.table: metrics.csv, one row per case and class, NaN as an empty cell."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from eval_summaries import NAMES
from eval_summaries import shifted_summary as _summary

from medseg.evaluation.summary import CasePair, evaluate_cases
from medseg.evaluation.table import CSV_COLUMNS, write_summary_csv


def test_csv_has_one_row_per_case_and_class(tmp_path: Path) -> None:
    s = _summary([0, 3], "v1", tumor=False)
    path = write_summary_csv(s, tmp_path / "m" / "metrics.csv")
    rows = list(csv.DictReader(open(path)))
    assert list(rows[0]) == list(CSV_COLUMNS) and len(rows) == 4
    r = {(x["case_id"], x["class"]): x for x in rows}
    assert float(r[("c0", "liver")]["Dice"]) == pytest.approx(s.metric_per_case[0].metrics[1]["Dice"])
    assert float(r[("c0", "liver")]["Dice"]) > 0.9
    assert float(r[("c1", "liver")]["Dice"]) == pytest.approx(s.metric_per_case[1].metrics[1]["Dice"])
    assert float(r[("c1", "tumor")]["Dice"]) == 0.0 and r[("c1", "tumor")]["label"] == "2"
    assert not any(p.name.endswith(".tmp") for p in path.parent.iterdir())


def test_nan_is_an_empty_cell(tmp_path: Path) -> None:
    gt = np.zeros((4, 8, 8), np.uint8)
    gt[1:3, 2:5, 2:5] = 1
    s = evaluate_cases([CasePair("a", pred=gt, gt=gt, spacing=(1, 1, 1))], NAMES)
    rows = list(csv.DictReader(open(write_summary_csv(s, tmp_path / "x.csv"))))
    tumor = next(r for r in rows if r["class"] == "tumor")
    assert tumor["Dice"] == "" and tumor["HD95"] == "" and tumor["VolumeDiff_ml"] == "0.0"
