"""Nightly decisions (settings, "nothing new", champion pointer checks) and the stage summary table."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medseg.config import MedsegConfig, ModelFamily
from medseg.io.bundle import BundleError
from medseg.ops.nightly import champion_version, changes_of, is_nothing_new, nightly_config, verify_champions
from medseg.ops.summary import stage_rows, totals_row, write_run_summary
from medseg.stages.outcome import StageOutcome
from medseg.workspace import Workspace


def test_nightly_config_freezes_plan_and_sets_warm_start_and_budget() -> None:
    cfg = MedsegConfig.model_validate({"train": {"max_minutes": 30}, "ops": {"nightly_train_minutes": 5}})
    n = nightly_config(cfg)
    assert n.preprocess.freeze_plan and n.train.warm_start and n.train.max_minutes == 5
    full = nightly_config(
        MedsegConfig.model_validate({"ops": {"nightly_training": "full"}, "train": {"max_minutes": 9}})
    )
    assert not full.train.warm_start and full.train.max_minutes == 9


def test_nothing_new_only_when_ingest_changed_nothing() -> None:
    skipped = StageOutcome(stage="ingest", skipped=True, reason="sources unchanged since last ingest")
    idle = StageOutcome(stage="ingest", stats={"files_indexed": 0, "series_ingested": 0, "files_skipped": 90})
    new = StageOutcome(stage="ingest", stats={"files_indexed": 36, "series_ingested": 1})
    removed = StageOutcome(stage="ingest", stats={"files_removed": 3, "volumes_removed": 1})
    assert is_nothing_new(skipped) and is_nothing_new(idle)
    assert changes_of(new) == {"files_indexed": 36, "series_ingested": 1}
    assert not is_nothing_new(removed)


def test_corrupt_champion_pointer_is_a_clear_bundle_error(tmp_path: Path) -> None:
    ws = Workspace.at(tmp_path).ensure()
    assert verify_champions(ws, [ModelFamily.CNN]) == {"cnn": None}
    ws.champion_path("cnn").parent.mkdir(parents=True)
    ws.champion_path("cnn").write_text("{not json")
    with pytest.raises(BundleError, match="champion.json is unreadable"):
        champion_version(ws, "cnn")
    ws.champion_path("cnn").write_text(json.dumps({"version": "v1"}))
    with pytest.raises(BundleError, match=r"champion cnn bundle .*v1 is corrupt: .*metadata.json not found"):
        verify_champions(ws, [ModelFamily.CNN])


def test_stage_rows_totals_and_summary_files(tmp_path: Path) -> None:
    outcomes = [
        StageOutcome(stage="ingest", seconds=2.0, stats={"files_indexed": 36, "series_ingested": 1, "quarantined": 0}),
        StageOutcome(stage="preprocess", seconds=3.5, stats={"cases_processed": 1}),
        StageOutcome(stage="train-cnn", seconds=60.0, stats={"promoted": True}),
        StageOutcome(stage="infer-cnn", seconds=4.0, stats={"predicted": 2}),
        StageOutcome(stage="infer-gan", skipped=True, reason="nothing pending"),
    ]
    rows = stage_rows(outcomes)
    assert rows[0]["files indexed"] == 36 and rows[1]["cases preprocessed"] == 1
    assert rows[2]["promoted"] == "yes" and rows[3]["predictions written"] == 2
    assert rows[4]["state"] == "skipped" and rows[4]["predictions written"] is None
    total = totals_row(rows)
    assert total["seconds"] == 69.5 and total["files indexed"] == 36 and total["predictions written"] == 2
    md, js = write_run_summary(tmp_path / "run", "nightly x", "retrained", rows, {"status": "retrained"})
    assert "| train-cnn | done | 60.0 |" in md.read_text() and "| total |" in md.read_text()
    assert json.loads(js.read_text())["stages"][3]["predictions written"] == 2
