"""The prediction-QA section: flagged cases first with their overlays, in the report or on its own page."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medseg.config import QAConfig
from medseg.qa.record import CaseQA, QAReport
from medseg.report.overlay import OVERLAY_SIZE_PX
from medseg.report.prediction_overlay import prediction_overlay_png
from medseg.report.qa_section import SECTION_KEY, qa_section, table_rows
from medseg.report.section_page import write_section_page


def _volume() -> tuple[np.ndarray, np.ndarray]:
    image = np.random.default_rng(0).normal(0, 1, (8, 32, 32)).astype(np.float32)
    label = np.zeros(image.shape, np.uint8)
    label[3:6, 8:20, 10:22] = 1
    return image, label


def test_the_overlay_shows_every_model_without_a_reference(tmp_path: Path) -> None:
    image, label = _volume()
    out = prediction_overlay_png(image, {"cnn": label, "gan": np.zeros_like(label)}, tmp_path / "o.png", "case")
    with Image.open(out) as png:
        assert png.size == OVERLAY_SIZE_PX
    with pytest.raises(ValueError, match=r"gan prediction shape \(8, 32, 31\) != image shape \(8, 32, 32\)"):
        prediction_overlay_png(image, {"gan": label[..., :31]}, tmp_path / "x.png", "case")


def _report(tmp_path: Path) -> QAReport:
    image, label = _volume()
    prediction_overlay_png(image, {"cnn": label}, tmp_path / "qa" / "001_c2.png", "c2")
    cases = [
        CaseQA(case_id="c2", score=10.0, flagged=True, reasons=["cnn: empty organ mask (every training case has >= "
                                                                "30 ml)"], volumes_ml={"cnn": {"foreground": 0.0}},
               overlay="qa/001_c2.png"),
        CaseQA(case_id="c1", score=0.4, flagged=False, volumes_ml={"cnn": {"foreground": 52.5}}),
        CaseQA(case_id="c3", score=0.1, flagged=False, volumes_ml={"cnn": {"foreground": 48.0}}),
    ]
    return QAReport(run_id="r", models={"cnn": "/p/cnn/v1"}, thresholds=QAConfig().model_dump(), cases=cases,
                    notes=["one model only: no model-vs-model agreement"])


def test_the_section_lists_flagged_cases_first_with_their_overlays(tmp_path: Path) -> None:
    section = qa_section(_report(tmp_path), tmp_path)
    assert section.lead and section.key == SECTION_KEY
    assert section.title == "Prediction QA: 1 of 3 cases flagged"
    assert [row[1] for row in section.rows] == [("c2", True), ("c1", False), ("c3", False)]
    assert section.rows[0][4][0].startswith("cnn: empty organ mask")
    assert section.images == ((tmp_path / "qa" / "001_c2.png", "#1 c2 · score 10.00 · cnn: empty organ mask "
                                                                "(every training case has >= 30 ml)"),)
    assert "volume outside [training min / 3.0, 3.0 x training max]" in section.note
    assert "Note: one model only" in section.note


def test_the_qa_page_renders_without_metrics(tmp_path: Path) -> None:
    page = write_section_page(tmp_path, "qa", "QA of r", [qa_section(_report(tmp_path), tmp_path)])
    md = page.markdown_path.read_text()
    assert md.startswith("# QA of r\n") and "](qa/001_c2.png)" in md
    body = [line for line in md.splitlines() if line.startswith("| ") and not line.startswith("| rank")]
    assert body[0].startswith("| 1 | **c2** | **10.00** | **yes** |")
    html = page.html_path.read_text()
    assert f'<section id="{SECTION_KEY}">' in html and html.count("data:image/png;base64,") == 1
    with pytest.raises(FileNotFoundError, match="001_c2.png of report section 'prediction-qa' does not exist"):
        write_section_page(tmp_path / "elsewhere", "qa", "t", [qa_section(_report(tmp_path), tmp_path / "elsewhere")])


def test_the_table_keeps_every_flagged_case_beyond_its_row_limit(tmp_path: Path) -> None:
    report = _report(tmp_path)
    report.cases = [*[CaseQA(case_id=f"f{i}", score=2.0, flagged=True) for i in range(3)], *report.cases[1:]]
    assert [r["case"] for r in table_rows(report, limit=2)] == ["f0", "f1", "f2"]
    assert len(table_rows(report, limit=None)) == 5
