"""CT vs MR (z-score) normalisation."""

from __future__ import annotations

import numpy as np
import pytest

from medseg.plan import Normalization, Plan
from medseg.preprocess.normalize import normalize


def _plan(normalization: Normalization, **kw: object) -> Plan:
    return Plan(
        modality="CT" if normalization == Normalization.CT else "MR",
        normalization=normalization,
        target_spacing=(1.0, 1.0, 1.0),
        median_shape=(8, 8, 8),
        patch_size=(8, 8, 8),
        kernel_sizes=[[3, 3, 3], [3, 3, 3]],
        strides=[[1, 1, 1], [2, 2, 2]],
        filters=[8, 16],
        num_classes=2,
        label_names={1: "organ"},
        **kw,
    )


def test_ct_clips_then_uses_dataset_statistics() -> None:
    plan = _plan(Normalization.CT, clip_range=(-100.0, 200.0), intensity_mean=50.0, intensity_std=25.0)
    img = np.array([-1000, -100, 50, 100, 3000], dtype=np.int16).reshape(1, 1, 5)
    out = normalize(img, plan)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out.ravel(), [-6.0, -6.0, 0.0, 2.0, 6.0])


def test_ct_without_statistics_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="clip_range"):
        normalize(np.zeros((2, 2, 2)), _plan(Normalization.CT))


def test_zscore_uses_the_nonzero_mask_and_zeroes_outside() -> None:
    rng = np.random.default_rng(0)
    img = np.zeros((4, 10, 10), np.float32)
    img[:, 2:8, 2:8] = rng.normal(500, 40, size=(4, 6, 6))
    mask = img != 0
    out = normalize(img, _plan(Normalization.ZSCORE), mask)
    assert abs(out[mask].mean()) < 1e-4 and abs(out[mask].std() - 1) < 1e-4
    assert np.all(out[~mask] == 0)
    # the scale is per case: a brighter copy normalises to the same values
    np.testing.assert_allclose(normalize(img * 3, _plan(Normalization.ZSCORE), mask), out, atol=1e-4)


def test_zscore_without_mask_uses_whole_image() -> None:
    img = np.arange(27, dtype=np.float32).reshape(3, 3, 3)
    out = normalize(img, _plan(Normalization.ZSCORE))
    assert abs(out.mean()) < 1e-5 and abs(out.std() - 1) < 1e-5
