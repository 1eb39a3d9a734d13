"""End-to-end: the pipeline flow on a small generated demo archive, under one Prefect test server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medseg.config_loader import load_config

CONFIGS = Path(__file__).resolve().parents[2] / "configs"

# The demo recipe on a smaller archive with an iteration budget (deterministic, load-independent): it still
# has to learn (CNN Dice >= 0.8 on held-out cases).
CI_SIZED = ["train.max_minutes=null", "train.max_epochs=8", "train.val_every=4", "split.test_fraction=0.3"]


@pytest.mark.slow
def test_pipeline_runs_every_stage_then_skips_unchanged_ones(tmp_path: Path, prefect_harness: None) -> None:
    from flows.pipeline import pipeline_flow
    from medseg.demo.archive import generate_demo_archive

    archive = tmp_path / "archive"
    generate_demo_archive(archive, cases=8, seed=3)
    cfg = load_config(CONFIGS / "demo.yaml", [*CI_SIZED, f"workspace={tmp_path / 'ws'}", f"sources=[{archive}]"])

    first = pipeline_flow(cfg)
    stages = {s["stage"]: s for s in first["stages"]}
    assert set(stages) == {"ingest", "preprocess", "train-cnn", "infer-cnn", "train-gan", "infer-gan", "report"}
    assert not any(s["skipped"] for s in first["stages"])

    summary = json.loads((Path(first["report"]).parent / "cnn" / "summary.json").read_text())
    assert {"metric_per_case", "mean", "foreground_mean"} <= set(summary)
    assert summary["metric_per_case"], "no test case was evaluated"
    assert {"Dice", "HD95"} <= set(summary["foreground_mean"])
    assert {row["model"] for row in first["table"]} >= {"cnn", "gan"}
    cnn_fg = next(r for r in first["table"] if r["model"] == "cnn" and r["class"] == "foreground mean")
    assert cnn_fg["Dice"] >= 0.8, f"CNN did not learn the demo task: {cnn_fg}"
    html = (Path(first["report"]).parent / "report.html").read_text()
    assert "<img" in html

    second = pipeline_flow(cfg)
    again = {s["stage"]: s for s in second["stages"]}
    for name in ("ingest", "preprocess", "train-cnn", "train-gan"):
        assert again[name]["skipped"], f"{name} should be skipped on an unchanged re-run"
    assert again["ingest"]["seconds"] < stages["ingest"]["seconds"]
