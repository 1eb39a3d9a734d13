"""medseg.report.plots: metric box plots as PNG files."""

from __future__ import annotations

from pathlib import Path

from eval_summaries import shifted_summary as _summary

from medseg.report.plots import boxplot_png, boxplots


def test_boxplots_are_pngs(tmp_path: Path) -> None:
    sums = {"cnn": _summary([0, 1, 2], "v1"), "gan": _summary([2, 3, 4], "v2", tumor=False)}
    p = boxplot_png(sums, "Dice", tmp_path / "d.png")
    assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    paths = boxplots(sums, tmp_path / "plots")
    assert {x.name for x in paths} >= {"box_Dice.png", "box_HD95.png", "box_NSD.png"}
