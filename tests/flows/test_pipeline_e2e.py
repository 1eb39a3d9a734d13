"""End-to-end: the pipeline flow on a small generated demo archive, under one Prefect test server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medseg.config_loader import load_config

CONFIGS = Path(__file__).resolve().parents[2] / "configs"

TINY = [
    "train.max_epochs=2",
    "train.iterations_per_epoch=3",
    "train.val_every=1",
    "train.filters=[8, 16, 32]",
    "train.max_minutes=null",
    "dask.n_workers=1",
    "preprocess.max_patch_voxels=16384",
]


@pytest.mark.slow
def test_pipeline_runs_every_stage_then_skips_unchanged_ones(tmp_path: Path, prefect_harness: None) -> None:
    from flows.pipeline import pipeline_flow
    from medseg.demo.archive import generate_demo_archive

    archive = tmp_path / "archive"
    generate_demo_archive(archive, cases=5, seed=3)
    cfg = load_config(CONFIGS / "demo.yaml", [*TINY, f"workspace={tmp_path / 'ws'}", f"sources=[{archive}]"])

    first = pipeline_flow(cfg.model_dump(mode="json"))
    stages = {s["stage"]: s for s in first["stages"]}
    assert set(stages) == {"ingest", "preprocess", "train-cnn", "infer-cnn", "train-gan", "infer-gan", "report"}
    assert not any(s["skipped"] for s in first["stages"])

    summary = json.loads((Path(first["report"]).parent / "cnn" / "summary.json").read_text())
    assert {"metric_per_case", "mean", "foreground_mean"} <= set(summary)
    assert summary["metric_per_case"], "no test case was evaluated"
    assert {"Dice", "HD95"} <= set(summary["foreground_mean"])
    assert {row["model"] for row in first["table"]} >= {"cnn", "gan"}
    html = (Path(first["report"]).parent / "report.html").read_text()
    assert "<img" in html

    second = pipeline_flow(cfg.model_dump(mode="json"))
    again = {s["stage"]: s for s in second["stages"]}
    for name in ("ingest", "preprocess", "train-cnn", "train-gan"):
        assert again[name]["skipped"], f"{name} should be skipped on an unchanged re-run"
    assert again["ingest"]["seconds"] < stages["ingest"]["seconds"]
