"""Device-side augmentation (``train.gpu_augmentation``): same transforms as the numpy path, on tensors."""

from __future__ import annotations

import numpy as np
import torch
from phantom_data import make_plan, tiny_config

from medseg.training.augment import AugmentParams, _spatial, draw_augmentation
from medseg.training.gpu_augment import affine_theta, augment_batch
from medseg.training.loop import make_loader
from medseg.training.patches import PatchDataset, load_cases
from medseg.training.steppers import CnnStepper
from medseg.workspace import Workspace


def _draw(n: int, shape: tuple[int, ...], **over: object) -> dict[str, torch.Tensor]:
    """``n`` neutral draws (no transform) with ``over`` applied to every sample."""
    base: dict[str, object] = {
        "spatial": False, "angle": 0.0, "scale": 1.0, "flip": [False, False, False], "noise_std": 0.0,
        "noise_seed": 0, "brightness": 1.0, "contrast": 1.0, "do_contrast": False, "gamma": 1.0, "do_gamma": False,
    }
    base.update(over)
    return {k: torch.stack([torch.as_tensor(v) for _ in range(n)]) for k, v in base.items()}


def _volume(shape: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    zz, yy, xx = np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij")
    image = (np.sin(3 * yy) + np.cos(2 * xx) + 0.5 * zz).astype(np.float32)
    label = ((yy - 0.2) ** 2 + (xx + 0.1) ** 2 < 0.3).astype(np.uint8) * 2
    return image, label


def test_identity_theta_and_neutral_draw_change_nothing() -> None:
    assert torch.allclose(affine_theta(0.0, 1.0, (8, 16, 16)), torch.eye(3, 4, dtype=torch.float64))
    image, label = _volume((8, 16, 16))
    x = torch.from_numpy(image)[None, None]
    y = torch.from_numpy(label.astype(np.int64))[None, None]
    ox, oy = augment_batch(x, y, _draw(1, (8, 16, 16)))
    assert torch.equal(ox, x) and torch.equal(oy, y)


def test_rotation_and_zoom_match_the_numpy_path() -> None:
    image, label = _volume((8, 32, 40))
    angle, scale = np.deg2rad(12.0), 1.1
    ref_img, ref_lab = _spatial(image, label, angle, scale)
    x = torch.from_numpy(image)[None, None]
    y = torch.from_numpy(label.astype(np.int64))[None, None]
    ox, oy = augment_batch(x, y, _draw(1, image.shape, spatial=True, angle=angle, scale=scale))
    inner = (slice(1, -1), slice(3, -3), slice(3, -3))  # border handling differs slightly
    assert np.allclose(ox[0, 0].numpy()[inner], ref_img[inner], atol=1e-4)
    agree = (oy[0, 0].numpy() == ref_lab).mean()
    assert agree > 0.99 and set(np.unique(oy.numpy())) <= {0, 2}
    assert not np.array_equal(oy[0, 0].numpy(), label)


def test_flips_noise_and_intensity_are_per_sample_and_deterministic() -> None:
    image, label = _volume((4, 16, 16))
    x = torch.from_numpy(np.stack([image, image]))[:, None]
    y = torch.from_numpy(np.stack([label, label]).astype(np.int64))[:, None]
    draws = _draw(2, image.shape)
    draws["flip"][0] = torch.tensor([False, True, True])
    ox, oy = augment_batch(x, y, draws)
    assert torch.equal(ox[0, 0], torch.flip(x[0, 0], [1, 2])) and torch.equal(oy[0, 0], torch.flip(y[0, 0], [1, 2]))
    assert torch.equal(ox[1], x[1])
    noisy = _draw(2, image.shape, noise_std=0.1, noise_seed=7, brightness=1.2, do_gamma=True, gamma=1.3,
                  do_contrast=True, contrast=0.8)
    a, _ = augment_batch(x, y, noisy)
    b, _ = augment_batch(x, y, noisy)
    assert torch.equal(a, b) and not torch.allclose(a, x)
    assert torch.equal(a[0], a[1])  # same seed and parameters -> same result
    assert a.min() >= (x * 1.2).min() - 1.0 and torch.isfinite(a).all()


def test_2d_batches_keep_their_shape() -> None:
    image, label = _volume((1, 32, 32))
    x = torch.from_numpy(image[0])[None, None]
    y = torch.from_numpy(label[0].astype(np.int64))[None, None]
    ox, oy = augment_batch(x, y, _draw(1, (1, 32, 32), spatial=True, angle=0.3, scale=0.9, flip=[True, True, False]))
    assert ox.shape == x.shape and oy.shape == y.shape and not torch.equal(ox, x)


def test_deferred_dataset_items_carry_draws_and_raw_patches(phantom_ws: Workspace) -> None:
    cases = load_cases({"case000": phantom_ws.preprocessed_case_path("case000")})
    params = AugmentParams()
    deferred = PatchDataset(cases, (16, 32, 32), 4, 0.5, seed=1, augment=params, defer_augmentation=True)
    raw = PatchDataset(cases, (16, 32, 32), 4, 0.5, seed=1, augment=None)
    for i in range(4):
        item = deferred[i]
        assert torch.equal(item["image"], raw[i]["image"])  # the crop is drawn before the augmentation
        assert set(item["aug"]) >= {"spatial", "angle", "flip", "noise_seed"}
        assert torch.equal(item["aug"]["noise_seed"], deferred[i]["aug"]["noise_seed"])
    draws = draw_augmentation(np.random.default_rng(0), params, (1, 32, 32))
    assert not draws["flip"][0]  # an axis of size 1 is never flipped


def test_cnn_step_with_device_augmentation(phantom_ws: Workspace) -> None:
    cfg = tiny_config(gpu_augmentation=True).train
    cases = load_cases({"case000": phantom_ws.preprocessed_case_path("case000")})
    ds = PatchDataset(cases, (16, 32, 32), 2, 0.5, seed=0, augment=AugmentParams(p_rotate=1.0), defer_augmentation=True)
    batch = next(iter(make_loader(ds, 2, torch.device("cpu"), cfg)))
    assert batch["aug"]["spatial"].shape == (2,)
    torch.manual_seed(0)
    stepper = CnnStepper(make_plan(), cfg, torch.device("cpu"))
    metrics = stepper.train_step(batch, 0, 0)
    assert np.isfinite(metrics["loss"])
