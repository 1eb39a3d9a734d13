"""Warm start (nightly mode): initialise from the family's champion when the plan is unchanged."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch
from phantom_data import make_plan, tiny_config, write_phantom_workspace

from medseg.training.promotion import champion, promote
from medseg.training.train import train_model
from medseg.training.warm_start import resolve_warm_start
from medseg.workspace import Workspace


def _weights(bundle: Path) -> dict[str, torch.Tensor]:
    return torch.load(bundle / "model.pt", weights_only=True)


def _trained_champion(ws: Workspace) -> Path:
    first = train_model(ws, tiny_config(max_epochs=1), "cnn")
    assert promote(ws, "cnn", first.bundle_path)
    path = champion(ws, "cnn")
    assert path is not None and path.name == first.version
    return path


def test_warm_start_begins_from_the_champion_with_the_small_budget(phantom_ws: Workspace) -> None:
    champ = _trained_champion(phantom_ws)
    # a negligible learning rate: the warm-started weights must stay those of the champion
    cfg = tiny_config(max_epochs=3, warm_start=True, warm_start_max_epochs=1, learning_rate=1e-12)
    warm = train_model(phantom_ws, cfg, "cnn")
    assert warm.warm_started_from == champ.name and warm.epochs == 1
    a, b = _weights(champ), _weights(warm.bundle_path)
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    meta = json.loads((warm.bundle_path / "metadata.json").read_text())
    source = meta["training"]["warm_started_from"]
    assert source["version"] == champ.name and source["plan_hash"] == meta["plan_hash"]
    assert meta["training"]["epochs"] == 1 and "warm start from cnn champion" in meta["training"]["warm_start_reason"]

    # the same config without warm start trains from scratch: far from the champion
    cold = train_model(phantom_ws, tiny_config(max_epochs=1, learning_rate=1e-12), "cnn")
    c = _weights(cold.bundle_path)
    assert cold.warm_started_from is None
    assert not all(torch.allclose(a[k], c[k], atol=1e-3) for k in a)


def test_no_champion_means_full_training(phantom_ws: Workspace) -> None:
    result = train_model(phantom_ws, tiny_config(max_epochs=2, warm_start=True, warm_start_max_epochs=1), "cnn")
    assert result.warm_started_from is None and result.epochs == 2
    assert result.warm_start_reason is not None and "no cnn champion" in result.warm_start_reason


def test_incompatible_plan_is_refused_with_a_clear_reason(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ws = write_phantom_workspace(tmp_path / "ws")
    champ = _trained_champion(ws)
    new_plan = make_plan(filters=(4, 8, 16, 24))  # another topology: the champion's weights do not fit
    new_plan.save(ws.plan_path)
    cfg = tiny_config(max_epochs=1, warm_start=True, filters=[4, 8, 16, 24])
    warm = resolve_warm_start(ws, "cnn", new_plan, cfg.train)
    assert not warm.active and champ.name in warm.reason and new_plan.plan_hash() in warm.reason
    with caplog.at_level(logging.WARNING, logger="medseg.training.warm_start"):
        result = train_model(ws, cfg, "cnn")
    assert result.warm_started_from is None and result.epochs == 1
    assert any("warm start refused" in r.getMessage() and "full training" in r.getMessage() for r in caplog.records)
    meta = json.loads((result.bundle_path / "metadata.json").read_text())
    assert meta["training"]["warm_started_from"] is None and "plan" in meta["training"]["warm_start_reason"]


def test_warm_start_off_is_a_no_op(phantom_ws: Workspace) -> None:
    warm = resolve_warm_start(phantom_ws, "cnn", make_plan(), tiny_config().train)
    assert not warm.active and warm.version is None and "false" in warm.reason
