"""Report sections: box plots, deltas, curves and metrics.csv links embedded in one report."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from eval_summaries import shifted_summary as _summary

from medseg.evaluation.table import write_summary_csv
from medseg.report.build import build_report
from medseg.report.deltas import delta_table
from medseg.report.plots import boxplot_png, boxplots


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
