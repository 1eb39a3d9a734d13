"""medseg.report.deltas: paired deltas between two summaries, best/worst cases, the previous report."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest
from eval_summaries import shifted_summary as _summary

from medseg.evaluation.summary import write_summary
from medseg.report.deltas import best_and_worst, case_scores, delta_table, previous_summary


def test_delta_table_is_paired_over_shared_cases() -> None:
    a = _summary([0, 2, 6], "v2", ids=["c0", "c1", "c2"])
    b = _summary([4, 4], "v1", ids=["c0", "c1"])
    d = delta_table(a, b, "new", "old")
    assert d.paired and d.n_cases == 2
    row = next(r for r in d.rows if r["class"] == "liver" and r["metric"] == "Dice")
    mean_a = np.mean([c.metrics[1]["Dice"] for c in a.metric_per_case[:2]])  # c2 is not shared
    assert row["a"] == pytest.approx(mean_a) and row["delta"] == pytest.approx(mean_a - row["b"])
    assert row["better"] == "new"
    hd = next(r for r in d.rows if r["class"] == "liver" and r["metric"] == "HD95")
    assert hd["delta"] < 0 and hd["better"] == "new"  # lower is better for distances
    tumor = next(r for r in d.rows if r["class"] == "tumor" and r["metric"] == "Dice")
    assert tumor["delta"] == 0 and tumor["better"] == ""


def test_best_and_worst_cases() -> None:
    s = _summary([3, 0, 6], "v1")
    scores = case_scores(s)
    assert best_and_worst(s) == ["c1", "c2"] and scores["c1"] > scores["c0"] > scores["c2"]
    assert best_and_worst(_summary([1], "v1")) == ["c0"]


def test_previous_summary_picks_newest_other_version(tmp_path: Path) -> None:
    reports = tmp_path / "reports"
    write_summary(_summary([1], "v1"), reports / "r1" / "cnn" / "summary.json")
    write_summary(_summary([2], "v2"), reports / "r2" / "cnn" / "summary.json")
    write_summary(_summary([3], "v3"), reports / "r3" / "cnn" / "summary.json")
    now = time.time()
    for i, r in enumerate(("r1", "r2", "r3")):
        os.utime(reports / r / "cnn" / "summary.json", (now + i, now + i))
    found = previous_summary(reports, "cnn", "v3", exclude_run="r3")
    assert found is not None and found[1].model["version"] == "v2"
    assert previous_summary(reports, "gan", "v3") is None
    assert previous_summary(reports, "cnn", "v1", exclude_run="r3")[1].model["version"] == "v2"  # type: ignore[index]
