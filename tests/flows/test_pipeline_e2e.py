"""End-to-end: the pipeline flow on a small generated demo archive, under one Prefect test server."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medseg.config_loader import load_config

CONFIGS = Path(__file__).resolve().parents[2] / "configs"

# The demo recipe as shipped (an iteration budget: the same model on any machine) in fp32, as on CPUs without
# bf16 units, on a smaller archive: it has to finish its budget (not the time cap) and learn (CNN Dice >= 0.8).
CI_SIZED = ["train.amp=false", "split.test_fraction=0.3"]


@pytest.mark.slow
def test_pipeline_runs_every_stage_then_skips_unchanged_ones(tmp_path: Path, prefect_harness: None) -> None:
    from medseg.demo.archive import generate_demo_archive
    from medseg.flows.pipeline import pipeline_flow

    archive = tmp_path / "archive"
    generate_demo_archive(archive, cases=8, seed=3)
    cfg = load_config(CONFIGS / "demo.yaml", [*CI_SIZED, f"workspace={tmp_path / 'ws'}", f"sources=[{archive}]"])

    first = pipeline_flow(cfg)
    stages = {s["stage"]: s for s in first["stages"]}
    assert set(stages) == {"ingest", "drift", "preprocess", "train-cnn", "infer-cnn", "train-gan", "infer-gan",
                           "qa", "report"}
    assert stages["drift"]["skipped"] and stages["drift"]["reason"].startswith("no plan yet")  # nothing to compare
    assert not any(s["skipped"] for s in first["stages"] if s["stage"] != "drift")
    for family in ("cnn", "gan"):
        train = stages[f"train-{family}"]["stats"]
        assert train["stopped"] == "iteration_budget" and train["time_capped"] is False, train
        assert train["iterations"] == train["planned_iterations"] == 200
        assert not any("time cap" in w for w in stages[f"train-{family}"]["warnings"])
    assert stages["train-cnn"]["stats"]["val_mean_dice"] >= 0.8, stages["train-cnn"]

    summary = json.loads((Path(first["report"]).parent / "cnn" / "summary.json").read_text())
    assert {"metric_per_case", "mean", "foreground_mean"} <= set(summary)
    assert summary["metric_per_case"], "no test case was evaluated"
    assert {"Dice", "HD95"} <= set(summary["foreground_mean"])
    assert {row["model"] for row in first["table"]} >= {"cnn", "gan"}
    cnn_fg = next(r for r in first["table"] if r["model"] == "cnn" and r["class"] == "foreground mean")
    assert cnn_fg["Dice"] >= 0.8, f"CNN did not learn the demo task: {cnn_fg}"
    html = (Path(first["report"]).parent / "report.html").read_text()
    assert "<img" in html
    # prediction QA of the held-out predictions leads the report
    assert stages["qa"]["stats"]["cases"] == len(summary["metric_per_case"]) and first["qa"].endswith("qa.md")
    assert html.index('<section id="prediction-qa">') < html.index("<h2>Comparison</h2>")

    second = pipeline_flow(cfg)
    again = {s["stage"]: s for s in second["stages"]}
    for name in ("ingest", "preprocess", "train-cnn", "train-gan"):
        assert again[name]["skipped"], f"{name} should be skipped on an unchanged re-run"
