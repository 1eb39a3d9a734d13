"""Infer stage selections ("test" / "pending" / list) and the report stage on an ingested demo archive."""

from __future__ import annotations

import csv
import importlib.util
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from medseg.config import IngestConfig, MedsegConfig, ModelFamily
from medseg.demo.archive import generate_demo_archive
from medseg.inference.selection import ingested_case_ids, pending_case_ids, select_cases
from medseg.ingest.run import ingest
from medseg.stages.infer import run_infer_stage
from medseg.stages.report import run_report_stage
from medseg.training.bundle import save_bundle
from medseg.training.network import build_segmenter
from medseg.workspace import Workspace


def _phantom() -> Any:
    if "phantom_data" not in sys.modules:
        path = Path(__file__).resolve().parents[1] / "training" / "phantom_data.py"
        spec = importlib.util.spec_from_file_location("phantom_data", path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules["phantom_data"] = module
        spec.loader.exec_module(module)
    return sys.modules["phantom_data"]


def _bundle(ws: Workspace, seed: int, training: dict[str, Any] | None = None) -> Path:
    phantom = _phantom()
    plan = phantom.make_plan()
    torch.manual_seed(seed)
    net = build_segmenter(plan, deep_supervision=False)
    with torch.no_grad():  # bias the organ logit so the untrained net predicts something non-trivial
        for p in net.parameters():
            p.mul_(0.1)
    history = [{"epoch": e, "loss": 1.0 / (e + 1), "val_dice": 0.1 * e} for e in range(3)]
    return save_bundle(ws, "cnn", plan, net.state_dict(), deep_supervision=False, validation={"mean_dice": 0.1},
                       training=training or {}, train_cases=[], val_cases=[], history=history)


@pytest.fixture()
def demo(tmp_path: Path) -> tuple[Workspace, MedsegConfig]:
    generate_demo_archive(tmp_path / "archive", cases=2, seed=5)
    ws = Workspace.at(tmp_path / "ws")
    ingest([tmp_path / "archive"], ws, IngestConfig(deid_secret="demo-secret", files_per_batch=64))
    cfg = MedsegConfig.model_validate(
        {"workspace": str(ws.root), "train": {"device": "cpu", "num_threads": 2}, "infer": {"overlap": 0.0}}
    )
    return ws, cfg


def test_pending_selection_and_report(demo: tuple[Workspace, MedsegConfig]) -> None:
    ws, cfg = demo
    torch.set_num_threads(2)
    all_cases = ingested_case_ids(ws)
    assert len(all_cases) == 2
    first = _bundle(ws, 0)
    with pytest.raises(FileNotFoundError, match="no splits at .*select cases='pending'"):
        run_infer_stage(cfg, ModelFamily.CNN, bundle_path=first, cases="test")
    with pytest.raises(ValueError, match="'test', 'pending' or a list"):
        select_cases(ws, "nightly", "cnn", first.name)

    out = run_infer_stage(cfg, ModelFamily.CNN, bundle_path=first, cases=[all_cases[0]])
    assert out.stats["predicted"] == 1 and out.stats["selection"] == "list"
    assert pending_case_ids(ws, "cnn", first.name) == all_cases[1:]
    out = run_infer_stage(cfg, ModelFamily.CNN, bundle_path=first, cases="pending")
    assert (out.stats["cases"], out.stats["predicted"], out.stats["dicom_seg"]) == (1, 1, 1)
    assert pending_case_ids(ws, "cnn", first.name) == []
    again = run_infer_stage(cfg, ModelFamily.CNN, bundle_path=first, cases="pending")
    assert (again.stats["cases"], again.stats["predicted"]) == (0, 0)
    pred_dir = ws.prediction_dir("cnn", first.name)
    assert len(list((pred_dir / "dicom-seg").glob("*/*/seg.dcm"))) == 2

    rep = run_report_stage(cfg, {"cnn": str(pred_dir)}, "run1")
    run_dir = ws.reports_dir / "run1"
    rows = list(csv.DictReader(open(run_dir / "cnn" / "metrics.csv")))
    assert len(rows) == 2 * 2 and {r["class"] for r in rows} == {"organ", "lesion"}
    assert sorted(p.name.split("_")[0] for p in (run_dir / "cnn").glob("*.png")) in (["best", "worst"], ["only"])
    assert (run_dir / "plots" / "box_Dice.png").is_file()
    html = (run_dir / "report.html").read_text()
    assert "Training curves" in html and "Distributions" in html and "previous champion" not in html
    assert rep.stats["cases"] == 2

    # a new model version: the new report compares it with the previous champion's report
    second = _bundle(ws, 1)
    assert pending_case_ids(ws, "cnn", second.name) == all_cases
    run_infer_stage(cfg, ModelFamily.CNN, bundle_path=second, cases="pending")
    rep2 = run_report_stage(cfg, {"cnn": str(ws.prediction_dir("cnn", second.name))}, "run2")
    assert f"previous champion ({first.name})" in rep2.stats["markdown"]
    deltas = [r for r in rep2.stats["deltas"] if r["metric"] == "Dice" and r["class"] == "foreground mean"]
    assert len(deltas) == 1 and deltas[0]["delta"] == pytest.approx(deltas[0]["a"] - deltas[0]["b"])
    assert np.isfinite(deltas[0]["a"])


def test_report_warns_about_a_model_stopped_by_the_time_cap(demo: tuple[Workspace, MedsegConfig]) -> None:
    ws, cfg = demo
    torch.set_num_threads(2)
    warning = "stopped by the time cap (train.max_minutes=3) after 25 of 400 iterations: the model trained less"
    capped = _bundle(ws, 0, training={"stopped_reason": "time_cap", "iterations": 25, "warnings": [warning]})
    pred_dir = ws.prediction_dir("cnn", capped.name)
    run_infer_stage(cfg, ModelFamily.CNN, bundle_path=capped, cases=ingested_case_ids(ws)[:1])
    rep = run_report_stage(cfg, {"cnn": str(pred_dir)}, "capped")
    assert rep.warnings == [f"cnn ({capped.name}): {warning}"]
    assert f"- **warning**: cnn ({capped.name}): {warning}" in rep.stats["markdown"]
    html = (ws.reports_dir / "capped" / "report.html").read_text()
    assert '<div class="warnings">' in html and warning in html

    completed = _bundle(ws, 1, training={"stopped_reason": "iteration_budget", "iterations": 400})
    run_infer_stage(cfg, ModelFamily.CNN, bundle_path=completed, cases=ingested_case_ids(ws)[:1])
    clean = run_report_stage(cfg, {"cnn": str(ws.prediction_dir("cnn", completed.name))}, "completed")
    assert clean.warnings == [] and "Warnings" not in clean.stats["markdown"]
