from __future__ import annotations

import json

import pytest
import torch
from phantom_data import make_plan, tiny_config

from medseg.config import GanConfig
from medseg.training.patches import PatchDataset, load_cases
from medseg.training.steppers import GanStepper, adversarial_weight
from medseg.training.train import train_model
from medseg.workspace import Workspace


def _batch(ws: Workspace) -> dict[str, torch.Tensor]:
    cases = load_cases({"case000": ws.preprocessed_case_path("case000")})
    ds = PatchDataset(cases, (16, 32, 32), 2, 1.0, seed=0)
    return {
        "image": torch.stack([ds[i]["image"] for i in range(2)]),
        "label": torch.stack([ds[i]["label"] for i in range(2)]),
    }


def _stepper(weight: float) -> GanStepper:
    torch.manual_seed(0)
    cfg = tiny_config(gan={"warmup_epochs": 0, "adversarial_weight": weight}).train
    return GanStepper(make_plan(), cfg, torch.device("cpu"))


def _params(m: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in m.named_parameters()}


def test_gan_step_updates_both_networks_and_logs_discriminator_accuracy(phantom_ws: Workspace) -> None:
    batch = _batch(phantom_ws)
    s = _stepper(0.5)
    assert s.set_lambda(0, 0) == pytest.approx(0.5)
    g0, d0 = _params(s.model), _params(s.discriminator)
    metrics = s.train_step(batch, epoch=0, iteration=0)
    assert set(metrics) >= {"loss", "seg_loss", "g_adv", "d_loss", "d_acc", "lambda"}
    assert 0.0 <= metrics["d_acc"] <= 1.0 and metrics["d_loss"] > 0
    assert metrics["loss"] == pytest.approx(metrics["seg_loss"] + 0.5 * metrics["g_adv"], rel=1e-5)
    assert any(not torch.equal(v, _params(s.model)[k]) for k, v in g0.items())
    assert any(not torch.equal(v, _params(s.discriminator)[k]) for k, v in d0.items())
    # the adversarial term reaches the generator: same init and batch, lambda 0 gives other weights
    s0 = _stepper(0.0)
    s0.set_lambda(0, 0)
    s0.train_step(batch, epoch=0, iteration=0)
    assert any(not torch.equal(v, s0.model.state_dict()[k]) for k, v in s.model.state_dict().items())


def test_adversarial_weight_warms_up_linearly() -> None:
    cfg = GanConfig(adversarial_weight=0.1, warmup_epochs=2)
    assert adversarial_weight(cfg, 0, 5, 10) == 0.0
    assert adversarial_weight(cfg, 1, 9, 10) == 0.0
    assert adversarial_weight(cfg, 3, 0, 10) == pytest.approx(0.05)
    assert adversarial_weight(cfg, 4, 0, 10) == pytest.approx(0.1)
    assert adversarial_weight(cfg, 9, 0, 10) == pytest.approx(0.1)


def test_discriminator_collapse_is_warned_once_after_it_persists() -> None:
    s = _stepper(0.1)
    assert s.end_epoch(3, {"d_acc": 0.8, "d_loss": 0.15}) == []
    dominated = [s.end_epoch(e, {"d_acc": 1.0, "d_loss": 0.0005}) for e in range(4, 9)]
    assert [len(w) for w in dominated] == [0, 0, 1, 0, 0]
    assert "collapse" in dominated[2][0]
    chance = [s.end_epoch(e, {"d_acc": 0.5, "d_loss": 0.25}) for e in range(9, 13)]
    assert [len(w) for w in chance] == [0, 0, 1, 0]
    assert "chance" in chance[2][0]


def test_a_single_chance_level_epoch_is_not_reported() -> None:
    s = _stepper(0.1)
    for epoch in range(3, 10):
        acc = 0.5 if epoch % 2 else 0.8
        assert s.end_epoch(epoch, {"d_acc": acc, "d_loss": 0.2}) == []


def test_gan_training_run_logs_d_metrics_in_bundle(phantom_ws: Workspace) -> None:
    cfg = tiny_config(gan={"warmup_epochs": 0})
    result = train_model(phantom_ws, cfg, "gan")
    history = json.loads((result.bundle_path / "history.json").read_text())
    assert {"d_loss", "d_acc", "g_adv", "lambda"} <= set(history[0])
    meta = json.loads((result.bundle_path / "metadata.json").read_text())
    assert meta["family"] == "gan" and meta["network"]["deep_supervision"] is True
