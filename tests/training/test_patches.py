from __future__ import annotations

import numpy as np
import pytest

from medseg.training.augment import AugmentParams, augment_patch
from medseg.training.patches import PatchDataset, TrainCase, crop_padded, load_cases
from medseg.workspace import Workspace


def _cases(ws: Workspace, ids: list[str]) -> list[TrainCase]:
    return load_cases({c: ws.preprocessed_case_path(c) for c in ids})


def _small_fg_case() -> TrainCase:
    """A case where foreground is a tiny cube, so random patches rarely contain it."""
    label = np.zeros((20, 96, 96), np.uint8)
    label[2:4, 80:84, 80:84] = 1
    return TrainCase(
        "small",
        np.zeros(label.shape, np.float32),
        label,
        {1: np.argwhere(label == 1), 2: np.zeros((0, 3), np.int64)},
    )


@pytest.mark.parametrize("ratio", [0.0, 0.33, 1.0])
def test_foreground_oversampling_ratio(ratio: float) -> None:
    ds = PatchDataset([_small_fg_case()], (8, 16, 16), 600, ratio, seed=1)
    forced, with_fg = 0, 0
    for i in range(len(ds)):
        _, label, _, f = ds.sample(i)
        forced += f
        with_fg += bool(label.any())
    assert abs(forced / len(ds) - ratio) < 0.06
    # every forced sample contains foreground; random ones almost never do here
    assert with_fg >= forced
    assert with_fg / len(ds) < ratio + 0.08


@pytest.mark.parametrize(
    ("batch", "ratio", "forced_per_batch"), [(2, 0.33, 1), (12, 0.33, 4), (4, 0.0, 0), (3, 1.0, 3)]
)
def test_foreground_oversampling_per_batch_as_nnunet(batch: int, ratio: float, forced_per_batch: int) -> None:
    ds = PatchDataset([_small_fg_case()], (8, 16, 16), batch * 20, ratio, seed=1, batch_size=batch)
    for start in range(0, len(ds), batch):
        flags = [ds.sample(i)[3] for i in range(start, start + batch)]
        labels = [ds.sample(i)[1] for i in range(start, start + batch)]
        # the last samples of every batch are the forced ones, and each of them holds foreground
        assert flags == [False] * (batch - forced_per_batch) + [True] * forced_per_batch
        assert all(lab.any() for lab, f in zip(labels, flags, strict=True) if f)


def test_forced_samples_without_foreground_fall_back_to_random() -> None:
    case = _small_fg_case()
    case.fg = {1: np.zeros((0, 3), np.int64)}
    ds = PatchDataset([case], (8, 16, 16), 50, 1.0, seed=0)
    assert not any(ds.sample(i)[3] for i in range(50))


def test_patches_are_deterministic_per_seed_epoch_and_index(phantom_ws: Workspace) -> None:
    cases = _cases(phantom_ws, ["case000", "case001"])
    a = PatchDataset(cases, (16, 32, 32), 6, 0.33, seed=3, augment=AugmentParams())
    b = PatchDataset(cases, (16, 32, 32), 6, 0.33, seed=3, augment=AugmentParams())
    items_a = [a[i] for i in range(6)]
    items_b = [b[i] for i in reversed(range(6))][::-1]  # access order does not matter
    for x, y in zip(items_a, items_b, strict=True):
        assert x["case_id"] == y["case_id"]
        assert np.array_equal(x["image"].numpy(), y["image"].numpy())
        assert np.array_equal(x["label"].numpy(), y["label"].numpy())
    a.set_epoch(1)
    assert not all(np.array_equal(a[i]["image"].numpy(), items_a[i]["image"].numpy()) for i in range(6))
    c = PatchDataset(cases, (16, 32, 32), 6, 0.33, seed=4, augment=AugmentParams())
    assert not all(np.array_equal(c[i]["image"].numpy(), items_a[i]["image"].numpy()) for i in range(6))


def test_item_shapes_and_padding_when_volume_is_smaller_than_patch(phantom_ws: Workspace) -> None:
    cases = _cases(phantom_ws, ["case000"])  # volume (20, 48, 48)
    ds = PatchDataset(cases, (24, 64, 64), 4, 0.5, seed=0)
    item = ds[0]
    assert item["image"].shape == (1, 24, 64, 64) and item["label"].shape == (1, 24, 64, 64)
    assert str(item["label"].dtype) == "torch.int64"
    # the whole volume is inside the padded patch: all labelled voxels are present
    total = int((cases[0].label > 0).sum())
    assert int((item["label"] > 0).sum()) == total


def test_2d_items_drop_the_z_axis(phantom_ws: Workspace) -> None:
    ds = PatchDataset(_cases(phantom_ws, ["case000"]), (1, 32, 32), 2, 0.5, seed=0, spatial_dims=2)
    assert ds[0]["image"].shape == (1, 32, 32)


def test_crop_padded_fills_outside_with_zero() -> None:
    arr = np.arange(27, dtype=np.float32).reshape(3, 3, 3) + 1
    out = crop_padded(arr, (-1, 0, 1), (3, 3, 3), np.float32)
    assert out[0].sum() == 0 and np.array_equal(out[1:, :, :2], arr[:2, :, 1:])
    assert np.all(out[:, :, 2] == 0)


def test_augmentation_is_deterministic_and_keeps_label_values() -> None:
    rng_img = np.random.default_rng(0)
    image = rng_img.normal(size=(8, 32, 32)).astype(np.float32)
    label = (image > 0.5).astype(np.uint8) * 2
    params = AugmentParams(p_rotate=1.0, p_scale=1.0, p_noise=1.0, p_gamma=1.0)
    a = augment_patch(image, label, np.random.default_rng(5), params)
    b = augment_patch(image, label, np.random.default_rng(5), params)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    assert a[0].shape == image.shape and a[0].dtype == np.float32 and a[1].dtype == np.uint8
    assert set(np.unique(a[1])) <= {0, 2}
    assert not np.array_equal(a[0], image)
