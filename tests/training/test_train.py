from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from phantom_data import tiny_config

from medseg.training import losses
from medseg.training.bundle import load_bundle
from medseg.training.checkpoint import LAST, load_checkpoint
from medseg.training.loop import TrainingDivergedError
from medseg.training.train import run_dir_for, run_key, train_model
from medseg.workspace import Workspace


def test_one_epoch_on_cpu_writes_a_complete_bundle(phantom_ws: Workspace) -> None:
    events: list[dict[str, Any]] = []
    result = train_model(phantom_ws, tiny_config(), "cnn", progress=events.append)
    b = result.bundle_path
    assert b.parent == phantom_ws.model_family_dir("cnn") and b.name == result.version
    for name in (
        "model.pt",
        "metadata.json",
        "history.json",
        "curves.png",
        "checkpoints/best.pt",
        "checkpoints/last.pt",
    ):
        assert (b / name).is_file(), name
    assert (b / "curves.png").read_bytes()[:4] == b"\x89PNG"
    meta = json.loads((b / "metadata.json").read_text())
    assert meta["family"] == "cnn" and meta["version"] == b.name
    assert set(meta["libraries"]) >= {"torch", "monai", "medseg"}
    assert meta["plan_hash"] == meta["plan"]["plan_hash"]
    assert meta["label_names"] == {"1": "organ", "2": "lesion"}
    assert meta["input_contract"]["channels"] == 1 and meta["input_contract"]["axis_order"] == ["z", "y", "x"]
    data = meta["training_data"]
    assert data["train_cases"] == ["case000", "case001", "case002"] and data["val_cases"] == ["case003"]
    assert len(data["snapshot_hash"]) == 16 and set(data["source_hashes"]) == set(data["train_cases"])
    val = meta["validation"]
    assert set(val["dice_per_case"]) == {"case003"} and set(val["mean_dice_per_class"]) == {"organ", "lesion"}
    assert meta["training"]["epochs"] == 1 and meta["training"]["iterations"] == 2
    assert meta["training"]["stopped_reason"] == "iteration_budget"
    assert meta["training"]["planned_iterations"] == 2 and meta["training"]["time_capped"] is False
    assert [e["event"] for e in events].count("epoch") == 1
    assert result.val_mean_dice is not None and 0.0 <= result.val_mean_dice <= 1.0
    # the run directory is cleaned up once the bundle exists
    assert not (phantom_ws.model_family_dir("cnn") / ".runs").exists()
    # a second run never overwrites the first bundle
    again = train_model(phantom_ws, tiny_config(), "cnn")
    assert again.bundle_path != b and (b / "model.pt").is_file()


def test_bundle_weights_equal_best_checkpoint_and_load_round_trip(phantom_ws: Workspace) -> None:
    result = train_model(phantom_ws, tiny_config(max_epochs=2), "cnn")
    bundle = load_bundle(result.bundle_path)
    assert not bundle.network.training and bundle.plan.num_classes == 3
    best = load_checkpoint(result.bundle_path / "checkpoints" / "best.pt")
    for k, v in bundle.network.state_dict().items():
        assert torch.equal(v, best["model"][k]), k


def _nan_after(monkeypatch: pytest.MonkeyPatch, good_calls: int) -> None:
    original = losses.SegmentationLoss.forward
    calls = {"n": 0}

    def forward(self: losses.SegmentationLoss, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        calls["n"] += 1
        out = original(self, pred, target)
        return out * float("nan") if calls["n"] > good_calls else out

    monkeypatch.setattr(losses.SegmentationLoss, "forward", forward)


def test_nan_loss_stops_with_clear_error_and_keeps_last_good_checkpoint(
    phantom_ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = tiny_config(max_epochs=3)
    _nan_after(monkeypatch, good_calls=2)  # epoch 0 (2 iterations) is fine, epoch 1 iteration 0 diverges
    with pytest.raises(TrainingDivergedError, match=r"epoch 1, iteration 0.*last good checkpoint \(after epoch 0\)"):
        train_model(phantom_ws, cfg, "cnn")
    from medseg.plan import Plan
    from medseg.splits import Splits

    key = run_key("cnn", Plan.load(phantom_ws.plan_path), Splits.load(phantom_ws.splits_path), cfg)
    last = load_checkpoint(run_dir_for(phantom_ws, "cnn", key) / LAST)
    assert last["state"]["epoch"] == 1 and last["state"]["iteration"] == 2
    weights = last["stepper"]["modules"]["model"]
    assert all(torch.isfinite(v).all() for v in weights.values() if v.is_floating_point())
    assert not any(p.is_dir() for p in phantom_ws.model_family_dir("cnn").iterdir() if not p.name.startswith("."))


def test_resume_after_interruption_matches_an_uninterrupted_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from phantom_data import write_phantom_workspace

    cfg = tiny_config(max_epochs=2)
    ws_a = write_phantom_workspace(tmp_path / "a")
    ws_b = write_phantom_workspace(tmp_path / "b")
    full = train_model(ws_a, cfg, "cnn")
    with monkeypatch.context() as m:
        _nan_after(m, good_calls=2)
        with pytest.raises(TrainingDivergedError):
            train_model(ws_b, cfg, "cnn")
    resumed = train_model(ws_b, cfg, "cnn")
    assert resumed.resumed_from_epoch == 1 and resumed.epochs == 2 and resumed.iterations == 4
    a = torch.load(full.bundle_path / "model.pt", weights_only=True)
    b = torch.load(resumed.bundle_path / "model.pt", weights_only=True)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_time_cap_stops_cleanly_still_bundles_and_says_so(phantom_ws: Workspace) -> None:
    result = train_model(phantom_ws, tiny_config(max_epochs=50, max_minutes=0.002), "cnn")
    assert result.stopped_reason == "time_cap" and result.time_capped
    assert result.epochs < 50 and result.iterations < result.planned_iterations == 100
    assert (result.bundle_path / "model.pt").is_file() and result.val_mean_dice is not None
    expected = f"stopped by the time cap (train.max_minutes=0.002) after {result.iterations} of 100 iterations"
    assert any(w.startswith(expected) for w in result.warnings), result.warnings
    training = json.loads((result.bundle_path / "metadata.json").read_text())["training"]
    assert training["time_capped"] is True and training["planned_iterations"] == 100
    assert any(w.startswith(expected) for w in training["warnings"])


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, weights_only=True)


def test_a_slow_machine_trains_bit_identical_weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The LR schedule follows iterations only: a run slowed down by a sleep in every iteration (a busy or
    slower CPU) ends with exactly the weights of an unhindered run, the time cap being set but not reached."""
    import time

    from phantom_data import write_phantom_workspace

    from medseg.training.steppers import CnnStepper

    cfg = tiny_config(max_epochs=3, iterations_per_epoch=3, val_every=2, max_minutes=30)
    fast = train_model(write_phantom_workspace(tmp_path / "fast"), cfg, "cnn")
    original = CnnStepper.train_step
    slowed: list[int] = []

    def slow_step(self: CnnStepper, *args: Any, **kwargs: Any) -> dict[str, float]:
        time.sleep(0.2)
        slowed.append(1)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(CnnStepper, "train_step", slow_step)
    slow = train_model(write_phantom_workspace(tmp_path / "slow"), cfg, "cnn")
    assert fast.stopped_reason == slow.stopped_reason == "iteration_budget"
    assert len(slowed) == 9  # every one of the 3 x 3 iterations was slowed down (no timed assertion: load varies)
    for name in ("model.pt", "checkpoints/last.pt"):
        a, b = (load_checkpoint(r.bundle_path / name) if name.endswith("last.pt") else _weights(r.bundle_path / name)
                for r in (fast, slow))
        if name.endswith("last.pt"):
            a, b = a["stepper"]["modules"]["model"], b["stepper"]["modules"]["model"]
        assert a.keys() == b.keys()
        assert all(torch.equal(a[k], b[k]) for k in a), f"{name} differs between the fast and the slow run"
