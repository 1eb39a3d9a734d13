"""Separable resampling operators agree with scipy's whole-volume spline / the linear reference."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from medseg.preprocess.resample import _linear
from medseg.preprocess.separable import (
    cubic_matrix,
    cubic_resize,
    linear_matrix,
    linear_resize,
    prefilter_axis,
)

SHAPES = [
    ((12, 30, 25), (20, 17, 40)),
    ((3, 5, 9), (7, 2, 9)),
    ((1, 4, 4), (2, 8, 3)),
    ((5, 1, 7), (3, 2, 1)),
    ((40, 8, 8), (13, 8, 8)),
]


def _scipy_cubic(data: np.ndarray, new_shape: tuple[int, ...]) -> np.ndarray:
    coeffs = ndimage.spline_filter(data.astype(np.float64), order=3, mode="mirror")
    factors = [n / o for n, o in zip(new_shape, data.shape, strict=True)]
    return ndimage.zoom(coeffs, factors, order=3, mode="mirror", grid_mode=True, prefilter=False)


@pytest.mark.parametrize(("shape", "new_shape"), SHAPES)
def test_cubic_resize_equals_scipy_zoom(shape: tuple[int, ...], new_shape: tuple[int, ...]) -> None:
    data = np.random.default_rng(0).normal(size=shape).astype(np.float32) * 100
    out = cubic_resize(data, new_shape)
    ref = _scipy_cubic(data, new_shape)
    assert out.shape == ref.shape == new_shape and out.dtype == np.float32 and out.flags.c_contiguous
    np.testing.assert_allclose(out, ref, atol=1e-3)  # float32 rounding of values ~100


@pytest.mark.parametrize(("shape", "new_shape"), SHAPES)
def test_linear_resize_equals_the_reference(shape: tuple[int, ...], new_shape: tuple[int, ...]) -> None:
    data = np.random.default_rng(1).normal(size=shape).astype(np.float32)
    np.testing.assert_allclose(linear_resize(data, new_shape), _linear(data, new_shape), atol=1e-5)


@pytest.mark.parametrize("n", [2, 3, 4, 7, 40])
@pytest.mark.parametrize("axis", [0, 1, 2])
def test_prefilter_equals_scipy(n: int, axis: int) -> None:
    shape = [6, 5, 4]
    shape[axis] = n
    data = np.random.default_rng(n).normal(size=shape).astype(np.float32)
    ref = ndimage.spline_filter1d(data.astype(np.float64), 3, axis=axis, mode="mirror")
    out = prefilter_axis(data, axis)
    assert out.shape == data.shape
    np.testing.assert_allclose(out, ref, atol=2e-5)
    np.testing.assert_array_equal(data, np.random.default_rng(n).normal(size=shape).astype(np.float32))


@pytest.mark.parametrize(("n_old", "n_new"), [(1, 3), (2, 5), (10, 4), (7, 7), (100, 33)])
def test_operators_are_partitions_of_unity(n_old: int, n_new: int) -> None:
    for m in (cubic_matrix(n_old, n_new), linear_matrix(n_old, n_new)):
        assert m.shape == (n_new, n_old)
        np.testing.assert_allclose(np.asarray(m.sum(axis=1)).ravel(), 1.0, atol=1e-6)


def test_same_size_is_identity() -> None:
    data = np.random.default_rng(2).normal(size=(4, 5, 6)).astype(np.float32)
    np.testing.assert_array_equal(cubic_resize(data, data.shape), data)
    assert cubic_resize(data, data.shape) is not data
