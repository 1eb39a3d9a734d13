"""report.md / report.html: side-by-side tables, self-contained HTML, table artifact rows, terminal table."""

from __future__ import annotations

import base64
import math
import re
from pathlib import Path

import numpy as np
import pytest

from medseg.evaluation.summary import CasePair, Summary, evaluate_cases, write_summary
from medseg.report.build import build_report, format_table, summary_table
from medseg.report.overlay import overlay_png
from medseg.report.section import ReportSection

NAMES = {1: "liver", 2: "tumor"}
SPACING = (2.0, 1.0, 1.0)


def _case(shift: int, tumor_pred: bool) -> tuple[np.ndarray, np.ndarray]:
    gt = np.zeros((6, 24, 24), dtype=np.uint8)
    gt[1:5, 4:20, 4:20] = 1
    gt[2:4, 8:12, 8:12] = 2
    pred = np.zeros_like(gt)
    pred[1:5, 4 + shift : 20, 4:20] = 1
    if tumor_pred:
        pred[2:4, 8:12, 8 + shift : 12] = 2
    return pred, gt


def _summary(model: str, shift: int, tumor_pred: bool) -> Summary:
    pairs = []
    for i in range(2):
        pred, gt = _case(shift + i, tumor_pred)
        pairs.append(CasePair(f"case{i}", pred=pred, gt=gt, spacing=SPACING))
    return evaluate_cases(pairs, NAMES, model={"family": model, "version": "v1"})


Inputs = tuple[dict[str, Path], dict[str, list[Path]], dict[str, Summary]]


@pytest.fixture()
def report_inputs(tmp_path: Path) -> Inputs:
    summaries = {"cnn": _summary("cnn", 0, True), "gan": _summary("gan", 2, False)}
    paths = {k: write_summary(s, tmp_path / "eval" / k / "summary.json") for k, s in summaries.items()}
    image = np.random.default_rng(0).normal(size=(6, 24, 24)).astype(np.float32)
    overlays: dict[str, list[Path]] = {}
    for k, shift in (("cnn", 0), ("gan", 2)):
        pred, gt = _case(shift, k == "cnn")
        overlays[k] = [overlay_png(image, gt, pred, tmp_path / "ov" / f"{k}_case0.png", f"case0 {k}")]
    return paths, overlays, summaries


def test_report_files_and_tables(tmp_path: Path, report_inputs: Inputs) -> None:
    paths, overlays, summaries = report_inputs
    run_dir = tmp_path / "reports" / "run1"
    rep = build_report(run_dir, paths, overlays, "Liver eval")
    assert rep.markdown_path == run_dir / "report.md" and rep.html_path == run_dir / "report.html"
    assert rep.markdown_path.read_text() == rep.markdown
    md = rep.markdown
    assert md.startswith("# Liver eval")
    # side by side: one comparison header with both models as columns
    assert "| class | metric | cnn | gan |" in md
    cnn_dice = summaries["cnn"].mean[1]["Dice"]
    gan_dice = summaries["gan"].mean[1]["Dice"]
    assert cnn_dice > gan_dice
    assert f"| liver | Dice | **{cnn_dice:.4f}** | {gan_dice:.4f} |" in md  # best in bold
    cnn_hd = summaries["cnn"].mean[1]["HD95"]
    gan_hd = summaries["gan"].mean[1]["HD95"]
    assert cnn_hd < gan_hd and f"| liver | HD95 (mm) | **{cnn_hd:.2f}** | {gan_hd:.2f} |" in md
    assert "foreground mean" in md
    for metric in ("Precision", "Recall", "Lesion_F1"):  # detection metrics beside the overlap ones
        cnn_v, gan_v = (summaries[k].mean[1][metric] for k in ("cnn", "gan"))
        assert f"| liver | {metric} | " in md and np.isfinite(cnn_v) and np.isfinite(gan_v)
    assert "![cnn cnn_case0](../../ov/cnn_case0.png)" in md
    # table rows for the Prefect artifact: 2 models x (2 classes + foreground mean)
    assert len(rep.table) == 6
    row = next(r for r in rep.table if r["model"] == "gan" and r["class"] == "foreground mean")
    assert set(row) == {"model", "class", "label", "Dice", "IoU", "HD95_mm", "NSD", "n_cases"}
    assert row["label"] is None and row["n_cases"] == 2
    assert row["Dice"] == pytest.approx(summaries["gan"].foreground_mean["Dice"], abs=1e-6)


def test_html_is_self_contained(tmp_path: Path, report_inputs: Inputs) -> None:
    paths, overlays, _ = report_inputs
    rep = build_report(tmp_path / "run", paths, overlays, "A <b>title</b> & more")
    text = rep.html_path.read_text()
    assert text.startswith("<!DOCTYPE html>") and text.rstrip().endswith("</html>")
    assert "A &lt;b&gt;title&lt;/b&gt; &amp; more" in text  # escaped
    assert "<link" not in text and "<script" not in text and "@import" not in text and "url(" not in text
    refs = re.findall(r'(?:src|href)\s*=\s*"([^"]*)"', text)
    assert refs and all(r.startswith("data:image/png;base64,") for r in refs)
    embedded = [base64.b64decode(r.split(",", 1)[1]) for r in refs]
    assert embedded == [overlays["cnn"][0].read_bytes(), overlays["gan"][0].read_bytes()]


def test_nan_rendering_and_missing_overlay(tmp_path: Path) -> None:
    gt = np.zeros((4, 10, 10), dtype=np.uint8)
    gt[1:3, 2:8, 2:8] = 1
    s = evaluate_cases([CasePair("c", pred=gt, gt=gt, spacing=(1.0, 1.0, 1.0))], NAMES)  # tumor absent
    assert math.isnan(s.mean[2]["Dice"])
    rep = build_report(tmp_path / "r", {"cnn": s}, {}, "t")
    assert "| tumor | Dice | n/a |" in rep.markdown
    assert next(r for r in rep.table if r["class"] == "tumor")["Dice"] is None
    assert "<img" not in rep.html_path.read_text()
    with pytest.raises(FileNotFoundError, match="nope.png"):
        build_report(tmp_path / "r", {"cnn": s}, {"cnn": [tmp_path / "nope.png"]}, "t")
    with pytest.raises(ValueError, match="at least one"):
        build_report(tmp_path / "r", {}, {}, "t")


def test_format_table_aligned(report_inputs: Inputs) -> None:
    _, _, summaries = report_inputs
    text = format_table(summaries)
    lines = text.splitlines()
    assert lines[0].split() == ["model", "class", "Dice", "IoU", "HD95", "mm", "NSD", "cases"]
    assert len(lines) == 2 + len(summary_table(summaries))
    assert len({len(line) for line in lines[:2]}) == 1  # header and rule have the same width
    dice_col_end = lines[0].index("Dice") + len("Dice")
    for line in lines[2:]:
        assert line[dice_col_end - 1] != " "  # numbers right-aligned under the header
    assert f"{summaries['cnn'].mean[1]['Dice']:.4f}" in text


def test_extra_sections_lead_or_follow_the_metrics(tmp_path: Path, report_inputs: Inputs) -> None:
    paths, overlays, _ = report_inputs
    qa = ReportSection(key="qa", title="Predictions to review", note="flagged first",
                       headers=("case", "flag"), rows=((("c7", True), ("empty", False)),),
                       images=((overlays["cnn"][0], "c7 overlay"),), lead=True)
    drift = ReportSection(key="drift", title="Drift", headers=("case",), rows=((("c9", False),),))
    rep = build_report(tmp_path / "run", paths, overlays, "t", sections=[drift, qa])
    md = rep.markdown
    assert md.index("## Predictions to review") < md.index("## Comparison") < md.index("## Drift")
    assert "| **c7** | empty |" in md and "![c7 overlay](../ov/cnn_case0.png)" in md
    text = rep.html_path.read_text()
    assert '<section id="qa"><h2>Predictions to review</h2><p>flagged first</p><table>' in text
    assert text.index('id="qa"') < text.index("<h2>Comparison</h2>") < text.index('id="drift"')
    assert text.count("data:image/png;base64,") == 3  # the section's image beside the two overlays
    with pytest.raises(FileNotFoundError, match="gone.png"):
        build_report(tmp_path / "run", paths, overlays, "t",
                     sections=[ReportSection(key="x", title="x", images=((tmp_path / "gone.png", "gone"),))])
