"""metrics.csv, box plots, deltas (paired), best/worst case picking, previous-report lookup, report sections."""

from __future__ import annotations

import csv
import math
import os
import time
from pathlib import Path

import numpy as np
import pytest

from medseg.evaluation.summary import CasePair, Summary, evaluate_cases, write_summary
from medseg.evaluation.table import CSV_COLUMNS, write_summary_csv
from medseg.report.build import build_report
from medseg.report.deltas import best_and_worst, case_scores, delta_table, previous_summary
from medseg.report.plots import boxplot_png, boxplots

NAMES = {1: "liver", 2: "tumor"}


def _summary(shifts: list[int], version: str, tumor: bool = True, ids: list[str] | None = None) -> Summary:
    pairs = []
    for i, s in enumerate(shifts):
        gt = np.zeros((6, 24, 24), np.uint8)
        gt[1:5, 4:20, 4:20] = 1
        gt[2:4, 8:12, 8:12] = 2
        pred = np.zeros_like(gt)
        pred[1:5, 4 + s : 20, 4:20] = 1
        if tumor:
            pred[2:4, 8:12, 8:12] = 2
        pairs.append(CasePair((ids or [f"c{j}" for j in range(len(shifts))])[i], pred=pred, gt=gt, spacing=(2, 1, 1)))
    return evaluate_cases(pairs, NAMES, model={"family": "cnn", "version": version})


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


def test_boxplots_are_pngs(tmp_path: Path) -> None:
    sums = {"cnn": _summary([0, 1, 2], "v1"), "gan": _summary([2, 3, 4], "v2", tumor=False)}
    p = boxplot_png(sums, "Dice", tmp_path / "d.png")
    assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    paths = boxplots(sums, tmp_path / "plots")
    assert {x.name for x in paths} >= {"box_Dice.png", "box_HD95.png", "box_NSD.png"}


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


def test_report_sections_embedded(tmp_path: Path) -> None:
    sums = {"cnn": _summary([0, 1], "v1"), "gan": _summary([2, 3], "v2", tumor=False)}
    plots = boxplots(sums, tmp_path / "run" / "plots")
    curve = boxplot_png(sums, "IoU", tmp_path / "bundle" / "curves.png")  # any PNG stands in for curves.png
    csvs = {k: write_summary_csv(s, tmp_path / "run" / k / "metrics.csv") for k, s in sums.items()}
    rep = build_report(tmp_path / "run", sums, {}, "t", deltas=[delta_table(sums["cnn"], sums["gan"], "cnn", "gan")],
                       boxplots=plots, curves={"cnn": curve}, csv_files=csvs)
    html = rep.html_path.read_text()
    assert "Deltas: cnn vs gan" in rep.markdown and "## Distributions" in rep.markdown
    assert "cnn/metrics.csv" in rep.markdown and "](plots/box_Dice.png)" in rep.markdown
    assert html.count("data:image/png;base64,") == len(plots) + 1 and 'src="plots/' not in html
    assert "+" in rep.markdown.split("Deltas: cnn vs gan")[1]  # positive deltas are signed
    with pytest.raises(FileNotFoundError, match="does not exist"):
        build_report(tmp_path / "run2", sums, {}, "t", boxplots=[tmp_path / "missing.png"])
    assert math.isfinite(rep.table[0]["Dice"])
