"""Done means: among good predictions, a deliberately broken one is flagged and ranked first (no ground truth read)."""

from __future__ import annotations

import json
from collections.abc import Callable

import numpy as np
import pytest
from PIL import Image
from qa_cases import CASES, QAWorkspace, replace_prediction

from medseg.io.case_arrays import PRED_LABEL, open_label
from medseg.qa.record import QAReport
from medseg.report.overlay import OVERLAY_SIZE_PX
from medseg.stages.qa import run_qa_stage


def _empty(label: np.ndarray) -> np.ndarray:
    return np.zeros_like(label)


def _blob(label: np.ndarray) -> np.ndarray:
    return np.ones_like(label)  # "organ" everywhere


def _noise(label: np.ndarray) -> np.ndarray:
    return (np.random.default_rng(0).random(label.shape) < 0.5).astype(np.uint8)


BREAKS: dict[str, tuple[Callable[[np.ndarray], np.ndarray], str]] = {
    "emptied": (_empty, "cnn: empty organ mask (every training case has >= "),
    "huge blob": (_blob, "x training max"),
    "noise": (_noise, "x training max"),
}


@pytest.mark.parametrize("kind", list(BREAKS))
def test_a_broken_prediction_is_flagged_and_ranked_first(qa_workspace: QAWorkspace, kind: str) -> None:
    ws = qa_workspace.ws
    pred_dir = ws.prediction_dir("cnn", "v1")
    broken = "case2"
    store = pred_dir / f"{broken}.zarr"
    breaker, reason = BREAKS[kind]
    replace_prediction(store, breaker(np.asarray(open_label(store, PRED_LABEL)[...])))
    for case_id in CASES:  # QA must not lean on ground truth: there is none for the unlabeled studies it serves
        (ws.volume_path(case_id) / "labels").rename(ws.volume_path(case_id) / "labels-hidden")

    outcome = run_qa_stage(qa_workspace.cfg, {"cnn": str(pred_dir)}, "run-1")

    report = QAReport.load(ws.reports_dir / "run-1" / "qa.json")
    first, rest = report.cases[0], report.cases[1:]
    assert first.case_id == broken and first.flagged and first.score >= 1.0
    assert any(reason in r for r in first.reasons), first.reasons
    assert [c.case_id for c in rest] and not any(c.flagged for c in rest), [(c.case_id, c.reasons) for c in rest]
    assert {c.case_id for c in report.cases} == set(CASES)
    assert outcome.stats["flagged"] == 1 and outcome.stats["table"][0]["case"] == broken
    # the QA page lists it first, with its overlay (image + prediction)
    md = (ws.reports_dir / "run-1" / "qa.md").read_text()
    rows = [line for line in md.splitlines() if line.startswith("| ") and not line.startswith("| rank")]
    assert rows[0].startswith(f"| 1 | **{broken}** |")
    assert first.overlay is not None and f"]({first.overlay})" in md
    with Image.open(ws.reports_dir / "run-1" / first.overlay) as png:
        assert png.size == OVERLAY_SIZE_PX
    assert all(c.overlay is None for c in rest)  # overlays for flagged cases only
    assert json.loads((ws.reports_dir / "run-1" / "qa.json").read_text())["schema_version"] == 1
