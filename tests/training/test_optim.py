"""medseg.training.optim: SGD from the train config and the polynomial learning-rate schedule."""

from __future__ import annotations

import pytest
import torch
from phantom_data import tiny_config

from medseg.training.optim import PolyLR, build_sgd


def test_build_sgd_follows_the_config() -> None:
    cfg = tiny_config(learning_rate=0.05).train
    opt = build_sgd([torch.nn.Parameter(torch.zeros(3))], cfg)
    group = opt.param_groups[0]
    assert group["lr"] == pytest.approx(0.05)
    assert group["momentum"] == pytest.approx(cfg.momentum)
    assert group["nesterov"] is (cfg.momentum > 0)


def test_poly_lr_decays_to_zero_and_round_trips_its_state() -> None:
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = PolyLR(opt, base_lr=0.01, exponent=0.9)
    assert sched.lr == pytest.approx(0.01)
    assert sched.set_progress(0.5) == pytest.approx(0.01 * 0.5**0.9)
    assert sched.lr == pytest.approx(0.01 * 0.5**0.9)
    assert sched.set_progress(1.5) == 0.0  # clipped to the end of training
    assert sched.set_progress(-1.0) == pytest.approx(0.01)
    sched.set_progress(0.25)
    other = PolyLR(torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0), base_lr=1.0)
    other.load_state_dict(sched.state_dict())
    assert other.lr == pytest.approx(sched.lr) and other.progress == pytest.approx(0.25)
