"""Loss functions: deep-supervised Dice + cross-entropy (segmenter) and least-squares GAN losses."""

from __future__ import annotations

import torch
from monai.losses import DiceCELoss
from torch import nn


def deep_supervision_weights(n_outputs: int) -> list[float]:
    """nnU-Net weights ``1/2^i`` for output ``i`` (0 = full resolution), normalised to sum to 1."""
    w = [1.0 / 2**i for i in range(n_outputs)]
    total = sum(w)
    return [x / total for x in w]


class SegmentationLoss(nn.Module):
    """Dice (foreground classes, batch dice) + cross-entropy, averaged over deep-supervision outputs.

    ``forward(pred, target)``: ``pred`` logits ``(B, C, *S)`` or stacked deep-supervision logits
    ``(B, H, C, *S)``; ``target`` integer labels ``(B, 1, *S)``. Returns a scalar.
    """

    def __init__(self) -> None:
        super().__init__()
        self.dice_ce = DiceCELoss(
            include_background=False,
            to_onehot_y=True,
            softmax=True,
            batch=True,
            smooth_nr=1e-5,
            smooth_dr=1e-5,
        )

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if pred.dim() == target.dim():
            loss: torch.Tensor = self.dice_ce(pred.float(), target)
            return loss
        heads = torch.unbind(pred, dim=1)
        weights = deep_supervision_weights(len(heads))
        total = torch.zeros((), device=pred.device)
        for w, head in zip(weights, heads, strict=True):
            total = total + w * self.dice_ce(head.float(), target)
        return total


def lsgan_discriminator_loss(real_scores: torch.Tensor, fake_scores: torch.Tensor) -> torch.Tensor:
    """LSGAN discriminator loss ``0.5 (E[(D(real) - 1)^2] + E[D(fake)^2])``."""
    return 0.5 * (((real_scores.float() - 1) ** 2).mean() + (fake_scores.float() ** 2).mean())


def lsgan_generator_loss(fake_scores: torch.Tensor) -> torch.Tensor:
    """LSGAN generator loss ``0.5 E[(D(fake) - 1)^2]``."""
    return 0.5 * ((fake_scores.float() - 1) ** 2).mean()


def discriminator_accuracy(real_scores: torch.Tensor, fake_scores: torch.Tensor) -> float:
    """Fraction of patch scores on the right side of 0.5 (real > 0.5, fake < 0.5); sets weighted equally."""
    real_ok = (real_scores.detach().float() > 0.5).float().mean()
    fake_ok = (fake_scores.detach().float() < 0.5).float().mean()
    return float(0.5 * (real_ok + fake_ok))
