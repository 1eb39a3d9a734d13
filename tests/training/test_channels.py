"""Multi-channel plans in training: network and discriminator input channels, patches and augmentation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from phantom_data import make_plan, tiny_config

from medseg.plan import ChannelNormalization, Normalization, Plan
from medseg.training.augment import AugmentParams, augment_patch
from medseg.training.network import build_segmenter
from medseg.training.patches import PatchDataset, TrainCase
from medseg.training.steppers import GanStepper

NAMES = ["T1post", "FLAIR", "T2"]


def _plan3() -> Plan:
    chans = [ChannelNormalization(name=n, normalization=Normalization.ZSCORE) for n in NAMES]
    return make_plan().model_copy(update={"channels": chans, "normalization": Normalization.ZSCORE,
                                          "clip_range": None, "intensity_mean": None, "intensity_std": None})


def test_single_channel_plan_is_unchanged() -> None:
    plan = make_plan()
    assert plan.channel_names == [] and plan.in_channels == 1 and plan.for_channel(0) is plan
    data = plan.model_dump(mode="json")
    del data["channels"]
    assert Plan.model_validate(data).plan_hash() == plan.plan_hash()  # plans saved before channels existed
    with pytest.raises(ValueError, match="one input channel"):
        plan.for_channel(1)


def test_plan_file_round_trip_keeps_channels(tmp_path: Path) -> None:
    plan = _plan3()
    assert plan.in_channels == 3 and plan.plan_hash() != make_plan().plan_hash()
    back = Plan.load(plan.save(tmp_path / "plan.json"))
    assert back.channel_names == NAMES and back.plan_hash() == plan.plan_hash()
    assert "channels" not in make_plan().save(tmp_path / "single.json").read_text()


def test_segmenter_and_discriminator_take_every_channel() -> None:
    plan = _plan3()
    net = build_segmenter(plan, deep_supervision=False)
    assert net(torch.zeros(1, 3, 16, 32, 32)).shape == (1, plan.num_classes, 16, 32, 32)
    torch.manual_seed(0)
    stepper = GanStepper(plan, tiny_config(gan={"warmup_epochs": 0}).train, torch.device("cpu"))
    first = next(m for m in stepper.discriminator.modules() if isinstance(m, torch.nn.Conv3d))
    assert first.in_channels == 3 + plan.num_classes  # image channels + class probabilities
    batch = {"image": torch.randn(2, 3, 16, 32, 32), "label": torch.randint(0, 3, (2, 1, 16, 32, 32))}
    stepper.set_lambda(0, 0)
    metrics = stepper.train_step(batch, epoch=0, iteration=0)
    assert np.isfinite(metrics["loss"]) and np.isfinite(metrics["d_loss"])


def test_patches_stack_channels_and_augment_them_together() -> None:
    rng = np.random.default_rng(0)
    base = rng.normal(size=(12, 40, 40)).astype(np.float32)
    label = (base > 1).astype(np.uint8)
    case = TrainCase("c", base, label, {1: np.argwhere(label == 1)}, extra=[2 * base, -base])
    ds = PatchDataset([case], (8, 24, 24), 6, 0.5, seed=0, augment=AugmentParams(p_noise=0, p_brightness=0,
                                                                                   p_contrast=0, p_gamma=0))
    for i in range(6):
        item = ds[i]
        img = item["image"].numpy()
        assert img.shape == (3, 8, 24, 24) and item["label"].shape == (1, 8, 24, 24)
        np.testing.assert_allclose(img[1], 2 * img[0], atol=1e-5)  # one spatial transform for all channels
        np.testing.assert_allclose(img[2], -img[0], atol=1e-5)
    single = PatchDataset([TrainCase("c", base, label, {1: np.argwhere(label == 1)})], (8, 24, 24), 2, 0.5, seed=0)
    assert single[0]["image"].shape == (1, 8, 24, 24)


def test_augment_patch_flips_channels_with_the_label() -> None:
    img = np.arange(2 * 4 * 5 * 6, dtype=np.float32).reshape(2, 4, 5, 6)
    lab = (np.arange(4 * 5 * 6).reshape(4, 5, 6) % 3).astype(np.uint8)
    params = AugmentParams(p_rotate=0, p_scale=0, p_flip=1.0, p_noise=0, p_brightness=0, p_contrast=0, p_gamma=0)
    out, out_lab = augment_patch(img, lab, np.random.default_rng(0), params)
    np.testing.assert_array_equal(out, img[:, ::-1, ::-1, ::-1])
    np.testing.assert_array_equal(out_lab, lab[::-1, ::-1, ::-1])
