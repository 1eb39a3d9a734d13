"""Optimisers and the polynomial learning-rate schedule (nnU-Net: SGD, Nesterov, poly decay 0.9)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

from medseg.config import GanConfig, TrainConfig


def build_sgd(params: Iterable[torch.nn.Parameter], cfg: TrainConfig) -> torch.optim.SGD:
    """SGD with Nesterov momentum ``cfg.momentum``, ``cfg.learning_rate`` and ``cfg.weight_decay``."""
    return torch.optim.SGD(
        params,
        lr=cfg.learning_rate,
        momentum=cfg.momentum,
        nesterov=cfg.momentum > 0,
        weight_decay=cfg.weight_decay,
    )


def build_discriminator_optimizer(params: Iterable[torch.nn.Parameter], cfg: GanConfig) -> torch.optim.Adam:
    """Adam (betas 0.5, 0.999: the usual GAN setting) at ``cfg.discriminator_lr``."""
    return torch.optim.Adam(params, lr=cfg.discriminator_lr, betas=(0.5, 0.999))


class PolyLR:
    """``lr = base_lr * (1 - progress) ** exponent`` for training progress in ``[0, 1]``.

    Progress is set by the loop (the larger of the iteration fraction and the wall-clock budget
    fraction), so a time-limited run still anneals its learning rate to ~0 by the end.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, base_lr: float, exponent: float = 0.9) -> None:
        self.optimizer = optimizer
        self.base_lr = float(base_lr)
        self.exponent = float(exponent)
        self.progress = 0.0
        self.set_progress(0.0)

    def set_progress(self, progress: float) -> float:
        """Update every param group's lr for ``progress`` (clipped to [0, 1]); returns the new lr."""
        self.progress = min(max(float(progress), 0.0), 1.0)
        lr = self.base_lr * (1.0 - self.progress) ** self.exponent
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        return lr

    @property
    def lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    def state_dict(self) -> dict[str, Any]:
        return {"base_lr": self.base_lr, "exponent": self.exponent, "progress": self.progress}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.base_lr = float(state["base_lr"])
        self.exponent = float(state["exponent"])
        self.set_progress(float(state["progress"]))
