"""The training stage: bundle + promotion, and a warm-started nightly run recorded in the stage stats."""

from __future__ import annotations

from pathlib import Path

import phantom_data
import torch

from medseg.config import MedsegConfig, ModelFamily
from medseg.stages.train import run_train_stage
from medseg.training.promotion import champion


def _cfg(root: Path, **train: object) -> MedsegConfig:
    phantom = phantom_data
    cfg: MedsegConfig = phantom.tiny_config(**train)
    return cfg.model_copy(update={"workspace": root})


def test_warm_started_stage_records_its_source(tmp_path: Path) -> None:
    torch.set_num_threads(2)
    ws = phantom_data.write_phantom_workspace(tmp_path / "ws")
    first = run_train_stage(_cfg(ws.root, max_epochs=1), ModelFamily.CNN)
    assert first.stats["promoted"] is True and first.stats["warm_started_from"] is None
    assert champion(ws, "cnn") is not None and champion(ws, "cnn").name == first.stats["version"]  # type: ignore[union-attr]

    nightly = run_train_stage(_cfg(ws.root, max_epochs=5, warm_start=True, warm_start_max_epochs=1), ModelFamily.CNN)
    assert not nightly.skipped
    assert nightly.stats["warm_started_from"] == first.stats["version"]
    assert nightly.stats["epochs"] == 1 and "warm start from" in nightly.stats["warm_start_reason"]
    assert nightly.stats["version"] != first.stats["version"]


def test_time_capped_run_is_flagged_in_the_stage_record_and_status_and_not_promoted(tmp_path: Path) -> None:
    from medseg.ops.status import champions, last_stage_runs
    from medseg.stage_record import load_record

    torch.set_num_threads(2)
    ws = phantom_data.write_phantom_workspace(tmp_path / "ws")
    completed = run_train_stage(_cfg(ws.root, max_epochs=1), ModelFamily.CNN)
    assert completed.stats["time_capped"] is False and completed.warnings == []

    capped = run_train_stage(_cfg(ws.root, max_epochs=50, max_minutes=0.002), ModelFamily.CNN)
    assert capped.stats["stopped"] == "time_cap" and capped.stats["time_capped"] is True
    assert capped.stats["promoted"] is False
    assert champion(ws, "cnn").name == completed.stats["version"]  # type: ignore[union-attr]
    expected = f"stopped by the time cap (train.max_minutes=0.002) after {capped.stats['iterations']} of 100 iterations"
    assert any(w.startswith(expected) for w in capped.warnings)
    assert "WARNING: " + expected in capped.headline()
    record = load_record(ws, "train-cnn")
    assert record is not None and any(w.startswith(expected) for w in record.stats["warnings"])
    assert any(w.startswith(expected) for w in last_stage_runs(ws)[0].stats["warnings"])

    (cnn,) = champions(ws, ["cnn"])
    assert cnn.version == completed.stats["version"] and cnn.warnings == []

    fresh = phantom_data.write_phantom_workspace(tmp_path / "fresh")  # a capped first model is still the champion
    first = run_train_stage(_cfg(fresh.root, max_epochs=50, max_minutes=0.002), ModelFamily.CNN)
    assert first.stats["time_capped"] is True and first.stats["promoted"] is True
    (cnn,) = champions(fresh, ["cnn"])
    assert cnn.version == first.stats["version"] and cnn.warnings[0].startswith("stopped by the time cap")


def test_a_cross_validated_stage_shows_its_cv_metrics_and_promotes_the_ensemble(tmp_path: Path) -> None:
    import json

    from medseg.stages.train import train_stage_config

    torch.set_num_threads(2)
    ws = phantom_data.write_phantom_workspace(tmp_path / "ws")
    out = run_train_stage(_cfg(ws.root, folds=2), ModelFamily.CNN)
    stats = out.stats
    assert stats["folds"] == 2 and stats["promoted"] is True and len(stats["cv_fold_mean_dice"]) == 2
    assert stats["cv_mean_dice"] == stats["val_mean_dice"] and set(stats["cv_dice_per_class"]) == {"organ", "lesion"}
    cv = json.loads(Path(stats["cv_metrics"]).read_text())
    assert cv["pooled"]["mean_dice"] == stats["cv_mean_dice"]
    assert "folds=2" in out.headline() and "cv_mean_dice=" in out.headline()
    assert json.loads(ws.champion_path("cnn").read_text())["kind"] == "ensemble"
    again = run_train_stage(_cfg(ws.root, folds=2), ModelFamily.CNN)
    assert again.skipped  # same data, plan and config
    # folds=1 keeps the stage key of the versions before cross-validation (no retraining after an upgrade)
    assert "folds" not in train_stage_config(_cfg(ws.root)) and train_stage_config(_cfg(ws.root, folds=2))["folds"] == 2


def test_a_held_promotion_keeps_the_champion_and_a_later_run_without_hold_trains_again(tmp_path: Path) -> None:
    """The nightly drift gate: the new bundle is trained and kept, never promoted; the record says why."""
    torch.set_num_threads(2)
    ws = phantom_data.write_phantom_workspace(tmp_path / "ws")
    held = run_train_stage(_cfg(ws.root, max_epochs=1), ModelFamily.CNN, hold_promotion="drift: 2 of 3 new cases")
    assert held.stats["promoted"] is False and held.stats["promotion_held"] == "drift: 2 of 3 new cases"
    assert champion(ws, "cnn") is None  # not even a first model is promoted
    assert (ws.model_family_dir("cnn") / held.stats["version"]).is_dir()  # the bundle is kept for review
    assert "not promoted: drift: 2 of 3 new cases" in held.warnings
    again = run_train_stage(_cfg(ws.root, max_epochs=1), ModelFamily.CNN, hold_promotion="drift: 2 of 3 new cases")
    assert again.skipped  # same data, same hold: nothing to do
    reviewed = run_train_stage(_cfg(ws.root, max_epochs=1), ModelFamily.CNN)  # e.g. `medseg train` after review
    assert not reviewed.skipped and reviewed.stats["promoted"] is True
    assert champion(ws, "cnn").name == reviewed.stats["version"]  # type: ignore[union-attr]
