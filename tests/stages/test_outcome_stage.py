"""medseg.stages.outcome: the stage result (headline, brief, warnings) and the progress adapter."""

from __future__ import annotations

from medseg.stages.outcome import StageOutcome, event_progress


def test_headline_brief_and_warnings() -> None:
    skipped = StageOutcome(stage="ingest", skipped=True, reason="sources unchanged")
    assert skipped.headline() == "ingest: skipped (sources unchanged)" and skipped.warnings == []
    done = StageOutcome(
        stage="train-cnn",
        seconds=12.34,
        stats={"promoted": True, "dice": 0.5, "per_case": {"a": 1}, "long": "x" * 41, "warnings": ["capped"]},
    )
    assert done.warnings == ["capped"]
    assert done.scalar_stats() == {"promoted": True, "dice": 0.5}
    assert done.headline() == "train-cnn: done in 12.3s (promoted=True, dice=0.5); WARNING: capped"
    brief = done.brief()
    assert brief["stats"] == {"promoted": True, "dice": 0.5} and brief["warnings"] == ["capped"]
    assert brief["headline"] == done.headline() and brief["stage"] == "train-cnn"


def test_event_progress_counts_iterations_and_cases() -> None:
    calls: list[tuple[str, int, int]] = []
    forward = event_progress(lambda label, done, total: calls.append((label, done, total)), "cnn")
    forward({"event": "iteration", "epoch": 0, "max_epochs": 2, "loss": 0.5, "global_iteration": 3,
             "total_iterations": 10})
    forward({"event": "epoch", "epoch": 1, "max_epochs": 2, "val_mean_dice": 0.25, "global_iteration": 10,
             "total_iterations": 10})
    forward({"event": "case", "done": 1, "total": 4})
    forward({"event": "other"})
    assert calls == [
        ("cnn iterations, epoch 1/2, loss 0.500", 3, 10),
        ("cnn iterations, epoch 2/2, val Dice 0.250", 10, 10),
        ("cnn cases", 1, 4),
    ]
    event_progress(None, "cnn")({"event": "case", "done": 1, "total": 4})  # no receiver: nothing happens


def test_event_progress_names_the_fold_of_a_cross_validation() -> None:
    calls: list[tuple[str, int, int]] = []
    forward = event_progress(lambda label, done, total: calls.append((label, done, total)), "cnn")
    forward({"event": "iteration", "epoch": 0, "max_epochs": 2, "loss": 0.5, "global_iteration": 13,
             "total_iterations": 30, "fold": 1, "folds": 3})
    assert calls == [("cnn iterations, fold 2/3, epoch 1/2, loss 0.500", 13, 30)]
