"""train.fit_minutes: the iteration budget planned to the minutes on this machine, the measurement traceless."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import torch
from phantom_data import tiny_config, write_phantom_workspace

from medseg.config import TrainConfig
from medseg.training.fit_budget import MARGIN, PLAN_FILE, FittedBudget, fitted_config
from medseg.training.train import train_model


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, weights_only=True)


def test_a_fitted_run_equals_the_run_of_its_planned_epochs(tmp_path: Path) -> None:
    """The measurement (training steps, a validation) is undone: the fitted run's weights are bit-identical
    to those of a plain run with ``max_epochs`` set to the planned epochs, and the bundle records the plan."""
    cfg = tiny_config(iterations_per_epoch=2, val_every=2)
    cfg.train.fit_minutes = 0.15
    fitted = train_model(write_phantom_workspace(tmp_path / "fitted"), cfg, "cnn")
    meta = json.loads((fitted.bundle_path / "metadata.json").read_text())
    plan = meta["training"]["fitted_budget"]
    assert plan["minutes"] == 0.15 and plan["seconds_per_iteration"] > 0 and plan["validation_seconds"] > 0
    epochs = plan["max_epochs"]
    assert meta["training"]["config"]["max_epochs"] == epochs == fitted.epochs
    assert fitted.planned_iterations == epochs * 2 and fitted.stopped_reason == "iteration_budget"

    plain_cfg = tiny_config(iterations_per_epoch=2, val_every=2, max_epochs=epochs)
    plain = train_model(write_phantom_workspace(tmp_path / "plain"), plain_cfg, "cnn")
    a, b = _weights(fitted.bundle_path / "model.pt"), _weights(plain.bundle_path / "model.pt")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_the_planned_epochs_fill_the_minutes_and_the_measurement_leaves_every_state_as_it_was(
    tmp_path: Path,
) -> None:
    """A clock that advances 0.5 s per reading: every step and the validation of 1 of 1 case "take" 0.5 s, so
    the plan is exact arithmetic; networks, optimizer and random generators are restored afterwards."""
    from medseg.plan import Plan
    from medseg.splits import Splits
    from medseg.training.augment import AugmentParams
    from medseg.training.checkpoint import capture_rng
    from medseg.training.fit_budget import MEASURED_STEPS, WARMUP_STEPS, fit_epochs
    from medseg.training.patches import PatchDataset, load_cases
    from medseg.training.steppers import build_stepper

    ws = write_phantom_workspace(tmp_path / "ws")
    plan, splits = Plan.load(ws.plan_path), Splits.load(ws.splits_path)
    tcfg = tiny_config(iterations_per_epoch=10, val_every=5).train.model_copy(update={"fit_minutes": 1.0})
    torch.manual_seed(0)
    stepper = build_stepper("cnn", plan, tcfg, torch.device("cpu"))
    paths = {c: ws.preprocessed_case_path(c) for c in [*splits.train, *splits.val]}
    dataset = PatchDataset(load_cases({c: paths[c] for c in splits.train}), plan.patch_size, 20, 0.33, seed=0,
                           augment=AugmentParams(), spatial_dims=plan.spatial_dims, batch_size=2)
    before, rng = _snapshot(stepper.state_dict()), capture_rng()
    ticks = itertools.count(0.0, 0.5)
    fitted = fit_epochs(stepper, dataset, {c: paths[c] for c in splits.val}, plan, tcfg, torch.device("cpu"),
                        clock=lambda: next(ticks))
    steps = WARMUP_STEPS + MEASURED_STEPS
    assert fitted.seconds_per_iteration == 0.5 and fitted.validation_seconds == 0.5
    assert fitted.measure_seconds == 0.5 * (2 * steps + 2 + 1)  # two readings per step and validation, one last
    left = 60 * (1 - MARGIN) - fitted.measure_seconds - 0.5
    assert fitted.max_epochs == int(left // (10 * 0.5 + 0.5 / 5))
    after = _snapshot(stepper.state_dict())
    assert _equal(before, after), "the measurement changed the networks, optimizer or scheduler"
    assert _equal(rng, capture_rng()), "the measurement moved a random generator"


def test_the_plan_is_measured_once_per_run_folder(tmp_path: Path) -> None:
    """A resumed run keeps the planned epochs of its first session (its LR schedule must not change)."""
    calls: list[int] = []

    def measure() -> FittedBudget:
        calls.append(1)
        return FittedBudget(7, 0.1, 2.0, 3.0, 1.0)

    cfg = TrainConfig(fit_minutes=1.0)
    first, plan = fitted_config(cfg, tmp_path, measure)
    again, plan_again = fitted_config(cfg, tmp_path, measure)
    assert first.max_epochs == again.max_epochs == 7 and plan == plan_again and len(calls) == 1
    assert (tmp_path / PLAN_FILE).is_file()
    assert fitted_config(TrainConfig(), tmp_path, measure) == (TrainConfig(), None) and len(calls) == 1


def _snapshot(state: Any) -> Any:
    if isinstance(state, torch.Tensor):
        return state.detach().clone()
    if isinstance(state, dict):
        return {k: _snapshot(v) for k, v in state.items()}
    if isinstance(state, (list, tuple)):
        return type(state)(_snapshot(v) for v in state)
    return state


def _equal(a: Any, b: Any) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_equal(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def test_a_split_without_validation_cases_validates_on_a_few_training_cases(
    tmp_path: Path, monkeypatch: Any
) -> None:
    """Validating every training case would spend minutes of a budgeted run: only the first
    ``VALIDATION_ON_TRAIN_CASES`` of the split are validated, and the bundle says so."""
    import medseg.training.train as train_module

    monkeypatch.setattr(train_module, "VALIDATION_ON_TRAIN_CASES", 2)
    ws = write_phantom_workspace(tmp_path / "ws", n_train=3, n_val=0)
    result = train_model(ws, tiny_config(), "cnn")
    meta = json.loads((result.bundle_path / "metadata.json").read_text())
    train_cases = json.loads(ws.splits_path.read_text())["train"]
    assert len(train_cases) == 3 and meta["training"]["validation_on_train_cases"] is True
    assert meta["training_data"]["val_cases"] == sorted(train_cases[:2])
