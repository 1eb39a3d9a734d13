"""The HTML report as a reader sees it: opened from disk in headless Chromium, with its title, tables
filled, every embedded image decoded and shown, the extra sections in place and no console error."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from browser_tab import Tab

from medseg.evaluation.summary import CasePair, Summary, evaluate_cases
from medseg.report.build import build_report
from medseg.report.overlay import overlay_png
from medseg.report.plots import boxplots
from medseg.report.section import ReportSection

pytestmark = pytest.mark.browser

NAMES = {1: "liver", 2: "tumor"}


def _case(shift: int) -> tuple[np.ndarray, np.ndarray]:
    gt = np.zeros((6, 24, 24), dtype=np.uint8)
    gt[1:5, 4:20, 4:20] = 1
    gt[2:4, 8:12, 8:12] = 2
    pred = np.zeros_like(gt)
    pred[1:5, 4 + shift : 20, 4:20] = 1
    pred[2:4, 8:12, 8 + shift : 12] = 2
    return pred, gt


def _report(tmp_path: Path) -> Path:
    """A report of two models on two generated cases, with overlays, box plots and a lead QA section."""
    image = np.random.default_rng(0).normal(size=(6, 24, 24)).astype(np.float32)
    summaries: dict[str, Summary] = {}
    overlays: dict[str, list[Path]] = {}
    for family, shift in (("cnn", 0), ("gan", 2)):
        pairs = [CasePair(f"case{i}", pred=pred, gt=gt, spacing=(2.0, 1.0, 1.0))
                 for i, (pred, gt) in enumerate(_case(shift + i) for i in range(2))]
        summaries[family] = evaluate_cases(pairs, NAMES, model={"family": family, "version": "v1"})
        pred, gt = _case(shift)
        overlays[family] = [overlay_png(image, gt, pred, tmp_path / "ov" / f"{family}.png", f"case0 {family}")]
    qa = ReportSection(key="qa", title="Predictions to review", headers=("case", "flag"),
                       rows=((("case1", True), ("small", False)),), images=((overlays["gan"][0], "case1"),),
                       lead=True)
    rep = build_report(tmp_path / "run", summaries, overlays, "Liver <eval>",
                       boxplots=boxplots(summaries, tmp_path / "plots"), sections=[qa])
    return rep.html_path


def _table_after(page: Any, heading: str) -> Any:
    """The table right after the ``<h2>`` reading ``heading``."""
    return page.locator(f"h2:text-is('{heading}') + table")


def test_report_renders_with_tables_and_images(tmp_path: Path, tab: Tab, screenshot_dir: Path) -> None:
    html_path = _report(tmp_path)
    page = tab.page
    page.goto(html_path.as_uri())
    page.wait_for_load_state("load")
    page.screenshot(path=str(screenshot_dir / "report.png"), full_page=True)

    assert page.title() == "Liver <eval>"
    assert page.locator("h1").inner_text() == "Liver <eval>"
    comparison = _table_after(page, "Comparison")
    assert comparison.locator("thead th").all_inner_texts()[:4] == ["class", "metric", "cnn", "gan"]
    assert comparison.locator("tbody tr").count() >= 3  # liver, tumor, foreground mean: at least Dice each
    per_model = _table_after(page, "Per model")
    rows = per_model.locator("tbody tr")
    assert rows.count() == 6  # 2 models x (2 classes + foreground mean)
    first = rows.first.locator("td").all_inner_texts()
    assert first[:2] == ["cnn", "liver"] and 0.0 < float(first[2]) <= 1.0  # a Dice value, not n/a
    assert _table_after(page, "Per case (foreground-mean Dice)").locator("tbody tr").count() >= 2
    qa = page.locator("section#qa")
    assert qa.locator("h2").inner_text() == "Predictions to review"
    assert qa.locator("tbody tr").count() == 1

    images = page.locator("img")
    assert images.count() == 2 + 1 + len(list((tmp_path / "plots").glob("*.png")))  # overlays, QA image, box plots
    sizes = images.evaluate_all("imgs => imgs.map(i => [i.complete, i.naturalWidth, i.naturalHeight, "
                                "i.getBoundingClientRect().width])")
    assert all(done and w > 0 and h > 0 and shown > 0 for done, w, h, shown in sizes), sizes
    assert tab.console_errors == [] and tab.page_errors == []
