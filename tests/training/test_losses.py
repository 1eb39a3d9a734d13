"""medseg.training.losses: deep-supervision weights, Dice+CE on logits, LSGAN losses, D accuracy."""

from __future__ import annotations

import pytest
import torch

from medseg.training.losses import (
    SegmentationLoss,
    deep_supervision_weights,
    discriminator_accuracy,
    lsgan_discriminator_loss,
    lsgan_generator_loss,
)


def test_deep_supervision_weights_halve_and_sum_to_one() -> None:
    w = deep_supervision_weights(3)
    assert w == pytest.approx([4 / 7, 2 / 7, 1 / 7])
    assert sum(deep_supervision_weights(5)) == pytest.approx(1.0)


def test_segmentation_loss_is_lower_for_the_right_logits_and_averages_heads() -> None:
    target = torch.zeros(2, 1, 4, 8, 8, dtype=torch.long)
    target[:, :, 1:3, 2:6, 2:6] = 1
    onehot = torch.cat([(target == 0), (target == 1), torch.zeros_like(target, dtype=torch.bool)], dim=1)
    good = onehot.float() * 10.0
    bad = torch.flip(onehot, dims=[1]).float() * 10.0
    loss = SegmentationLoss()
    assert float(loss(good, target)) < float(loss(bad, target))
    # stacked heads (B, H, C, *S): weighted like deep_supervision_weights
    stacked = torch.stack([good, bad], dim=1)
    w = deep_supervision_weights(2)
    expected = w[0] * loss(good, target) + w[1] * loss(bad, target)
    assert float(loss(stacked, target)) == pytest.approx(float(expected), rel=1e-5)


def test_lsgan_losses_and_discriminator_accuracy() -> None:
    ones, zeros = torch.ones(4), torch.zeros(4)
    assert float(lsgan_discriminator_loss(ones, zeros)) == 0.0
    assert float(lsgan_discriminator_loss(zeros, ones)) == pytest.approx(1.0)
    assert float(lsgan_generator_loss(ones)) == 0.0
    assert float(lsgan_generator_loss(zeros)) == pytest.approx(0.5)
    assert discriminator_accuracy(ones, zeros) == 1.0
    assert discriminator_accuracy(zeros, ones) == 0.0
    assert discriminator_accuracy(torch.tensor([0.9, 0.1]), torch.tensor([0.1, 0.1])) == pytest.approx(0.75)
