"""Loss functions: deep-supervised Dice + cross-entropy (segmenter) and least-squares GAN losses."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from monai.losses import DiceCELoss
from torch import nn

from medseg.training.distributed import SINGLE, DistContext, sum_over_ranks

#: Dice smoothing of numerator and denominator (both losses).
DICE_SMOOTH = 1e-5


def deep_supervision_weights(n_outputs: int) -> list[float]:
    """nnU-Net weights ``1/2^i`` for output ``i`` (0 = full resolution), normalised to sum to 1."""
    w = [1.0 / 2**i for i in range(n_outputs)]
    total = sum(w)
    return [x / total for x in w]


class ShardedDiceCELoss(nn.Module):
    """MONAI's ``DiceCELoss(include_background=False, to_onehot_y, softmax, batch=True)`` on one rank's
    shard of a batch split over the ranks of ``ctx``.

    A batch Dice does not decompose over samples (its ratio is of sums over the whole batch), so
    the per-class intersections and denominators are summed over the ranks (with gradients, see
    :func:`medseg.training.distributed.sum_over_ranks`) and every rank computes the Dice of the
    whole batch. The cross-entropy is the mean over the shard's voxels: with equal shards, the mean
    of the ranks' values is that of the whole batch, as DDP's gradient averaging assumes. So the
    mean over the ranks of this loss (and of its gradients) is the one-process loss of the whole
    batch. With :data:`~medseg.training.distributed.SINGLE` it equals ``DiceCELoss`` (up to float
    rounding).

    ``forward(pred, target)``: logits ``(b, C, *S)``, integer labels ``(b, 1, *S)``; returns a scalar.
    """

    def __init__(self, ctx: DistContext = SINGLE) -> None:
        super().__init__()
        self.ctx = ctx

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        labels = target[:, 0].long()
        probs = torch.softmax(pred, dim=1)[:, 1:]
        onehot = F.one_hot(labels, pred.shape[1]).movedim(-1, 1)[:, 1:].to(probs.dtype)
        axes = [0, *range(2, pred.dim())]
        sums = torch.stack([(probs * onehot).sum(axes), onehot.sum(axes) + probs.sum(axes)])  # (2, C - 1)
        intersection, denominator = sum_over_ranks(self.ctx, sums)
        dice = 1.0 - (2.0 * intersection + DICE_SMOOTH) / (denominator + DICE_SMOOTH)
        return dice.mean() + F.cross_entropy(pred, labels)


class SegmentationLoss(nn.Module):
    """Dice (foreground classes, batch dice) + cross-entropy, averaged over deep-supervision outputs.

    ``forward(pred, target)``: ``pred`` logits ``(B, C, *S)`` or stacked deep-supervision logits
    ``(B, H, C, *S)``; ``target`` integer labels ``(B, 1, *S)``. Returns a scalar.

    One process uses MONAI's ``DiceCELoss``; a data-parallel run (``ctx.active``) the
    :class:`ShardedDiceCELoss`, whose mean over the ranks is the loss of the whole batch.
    """

    def __init__(self, ctx: DistContext = SINGLE) -> None:
        super().__init__()
        self.dice_ce: nn.Module = ShardedDiceCELoss(ctx) if ctx.active else DiceCELoss(
            include_background=False,
            to_onehot_y=True,
            softmax=True,
            batch=True,
            smooth_nr=DICE_SMOOTH,
            smooth_dr=DICE_SMOOTH,
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
