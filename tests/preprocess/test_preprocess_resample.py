"""Resampling: shapes, values, the separate-z rule, label class preservation."""

from __future__ import annotations

import numpy as np
import pytest

from medseg.preprocess.resample import (
    compute_new_shape,
    nearest_indices,
    resample_image,
    resample_labels,
    resample_to_shape,
    separate_z_axis,
)


def test_compute_new_shape_rounds_extent() -> None:
    assert compute_new_shape((20, 40, 40), (2.0, 1.0, 1.0), (1.0, 1.0, 1.0)) == (40, 40, 40)
    assert compute_new_shape((20, 40, 41), (5.0, 0.7, 0.7), (2.5, 1.4, 1.4)) == (40, 20, 20)
    assert compute_new_shape((1, 3, 3), (1.0, 1.0, 1.0), (10.0, 10.0, 10.0)) == (1, 1, 1)


def test_identity_spacing_returns_same_values() -> None:
    img = np.random.default_rng(0).normal(size=(6, 7, 8)).astype(np.float32)
    out = resample_image(img, (1.0, 1.0, 1.0), (1.0, 1.0, 1.0))
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, img)


def test_cubic_upsampling_preserves_a_linear_ramp_inside() -> None:
    z, y, x = np.meshgrid(np.arange(16.0), np.arange(16.0), np.arange(16.0), indexing="ij")
    img = (2 * z + y - 0.5 * x).astype(np.float32)
    out = resample_image(img, (2.0, 2.0, 2.0), (1.0, 1.0, 1.0))
    assert out.shape == (32, 32, 32)
    # new voxel i samples old index (i + 0.5) / 2 - 0.5 on each axis
    zz, yy, xx = np.meshgrid(*[(np.arange(n) + 0.5) / 2 - 0.5 for n in out.shape], indexing="ij")
    expected = 2 * zz + yy - 0.5 * xx
    inner = (slice(10, -10),) * 3  # away from the boundary handling of the spline prefilter
    np.testing.assert_allclose(out[inner], expected[inner], atol=1e-2)


def test_separate_z_takes_whole_slices_along_the_anisotropic_axis() -> None:
    rng = np.random.default_rng(1)
    img = rng.normal(size=(5, 16, 16)).astype(np.float32)
    out = resample_image(img, (5.0, 1.0, 1.0), (2.5, 1.0, 1.0), anisotropic_axis=0)
    assert out.shape == (10, 16, 16)
    # nearest along z: every output slice is exactly one input slice (in-plane spacing unchanged)
    for k in range(10):
        np.testing.assert_allclose(out[k], img[k // 2], atol=1e-5)
    # without separate z the slices are blended
    blended = resample_image(img, (5.0, 1.0, 1.0), (2.5, 1.0, 1.0))
    assert not np.allclose(blended[1], img[0], atol=1e-3)


def test_separate_z_axis_rule() -> None:
    assert separate_z_axis((5.0, 0.7, 0.7), (1.0, 1.0, 1.0)) == 0  # current spacing decides first
    assert separate_z_axis((1.0, 1.0, 1.0), (1.0, 4.0, 1.0)) == 1  # then the target spacing
    assert separate_z_axis((2.0, 1.0, 1.0), (2.0, 1.0, 1.0)) is None
    assert separate_z_axis((0.5, 2.0, 2.0), (0.5, 2.0, 2.0)) is None  # two coarse axes: no separate z
    assert separate_z_axis((5.0, 1.0, 1.0), (5.0, 1.0, 1.0), threshold=6.0) is None


def test_labels_keep_their_classes_and_blobs() -> None:
    lab = np.zeros((10, 20, 20), np.uint8)
    lab[2:8, 4:12, 4:12] = 3
    lab[3:6, 14:18, 13:18] = 7
    up = resample_labels(lab, (2.0, 1.0, 1.0), (1.0, 0.5, 0.5))
    assert up.dtype == np.uint8 and up.shape == (20, 40, 40)
    assert set(np.unique(up)) == {0, 3, 7}
    # volume in mm^3 preserved up to the boundary interpolation
    for cls in (3, 7):
        v_old = (lab == cls).sum() * 2.0
        v_new = (up == cls).sum() * 0.25
        assert abs(v_new - v_old) / v_old < 0.1
    nearest = resample_labels(lab, (2.0, 1.0, 1.0), (1.0, 0.5, 0.5), one_hot=False)
    np.testing.assert_array_equal(nearest[::2, ::2, ::2], lab)


def test_resample_to_shape_order0_keeps_dtype_and_values() -> None:
    arr = np.arange(24, dtype=np.int16).reshape(2, 3, 4)
    out = resample_to_shape(arr, (4, 6, 8), order=0)
    assert out.dtype == np.int16
    np.testing.assert_array_equal(out[::2, ::2, ::2], arr)
    with pytest.raises(ValueError, match="does not match"):
        resample_to_shape(arr, (4, 6), order=0)


def test_nearest_indices_downsample_and_upsample() -> None:
    np.testing.assert_array_equal(nearest_indices(4, 8), [0, 0, 1, 1, 2, 2, 3, 3])
    np.testing.assert_array_equal(nearest_indices(8, 4), [1, 3, 5, 7])
