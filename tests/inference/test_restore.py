"""Plane-by-plane restoration to the native grid == whole-volume linear resampling of the logits + argmax."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from scipy import ndimage

from medseg.geometry import Geometry
from medseg.inference.restore import NativeRestorer, axis_map
from medseg.preprocess.case import PreprocessedImage, restore_probabilities_to_native
from medseg.preprocess.resample import nearest_indices

GEOMETRY = Geometry.create((2.0, 1.0, 1.0), (0.0, 0.0, 0.0))


def _logits(shape: tuple[int, ...], seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return ndimage.gaussian_filter(rng.normal(size=shape), sigma=(0, 1.5, 1.5, 1.5)).astype(np.float32) * 10


def _pre(pre_shape: Any, bbox: Any, native: Any) -> PreprocessedImage:
    return PreprocessedImage(
        data=np.zeros(pre_shape, np.float32), geometry=GEOMETRY, crop_bbox=bbox, native_shape=native,
        native_geometry=GEOMETRY, anisotropic_axis=None,
    )


def _restore(logits: np.ndarray, bbox: Any, native: Any, chunks: list[int], axis: int | None = None) -> np.ndarray:
    out = np.zeros(native, dtype=np.uint8)
    r = NativeRestorer(logits.shape[1:], bbox, out, axis)
    z0 = 0
    for n in chunks:
        r.feed(z0, logits[:, z0 : z0 + n])
        z0 += n
    assert z0 == logits.shape[1] and r.done
    return out


@pytest.mark.parametrize(
    "pre_shape,bbox,native",
    [
        ((12, 20, 24), ((2, 30), (5, 45), (0, 50)), (33, 50, 50)),  # upsampling, cropped
        ((30, 40, 40), ((0, 15), (0, 20), (3, 23)), (15, 20, 26)),  # downsampling
        ((10, 16, 16), ((0, 10), (0, 16), (0, 16)), (10, 16, 16)),  # same grid
    ],
)
def test_restorer_equals_whole_volume_linear_resampling(pre_shape: Any, bbox: Any, native: Any) -> None:
    logits = _logits((3, *pre_shape), 0)
    ref = restore_probabilities_to_native(logits, _pre(pre_shape, bbox, native)).argmax(axis=0)
    for chunks in ([pre_shape[0]], [1] * pre_shape[0], [3, 5, pre_shape[0] - 8]):
        ours = _restore(logits, bbox, native, chunks)
        mismatch = ours != ref
        assert mismatch.mean() < 1e-3, mismatch.sum()  # float32 rounding at exact ties only
    # outside the crop box: background
    outside = np.ones(native, bool)
    outside[tuple(slice(a, b) for a, b in bbox)] = False
    assert not ours[outside].any()


def test_restorer_nearest_along_the_anisotropic_axis() -> None:
    pre_shape, native = (8, 20, 20), (24, 30, 30)
    bbox = ((0, 24), (0, 30), (0, 30))
    logits = _logits((2, *pre_shape), 1)
    ours = _restore(logits, bbox, native, [3, 5], axis=0)
    z_nearest = logits[:, nearest_indices(pre_shape[0], native[0])]  # nearest in z, then linear in-plane
    ref = restore_probabilities_to_native(z_nearest, _pre(z_nearest.shape[1:], bbox, native)).argmax(axis=0)
    assert (ours != ref).mean() < 1e-3


def test_restorer_rejects_out_of_order_slabs() -> None:
    r = NativeRestorer((4, 4, 4), ((0, 4), (0, 4), (0, 4)), np.zeros((4, 4, 4), np.uint8))
    with pytest.raises(ValueError, match="expected the slab starting at plane 0"):
        r.feed(2, np.zeros((2, 2, 4, 4), np.float32))


def test_axis_map_is_extent_aligned() -> None:
    m = axis_map(4, 8, nearest=False)
    coords = m.lo + m.w
    np.testing.assert_allclose(coords, np.clip((np.arange(8) + 0.5) / 2 - 0.5, 0, 3))
    assert axis_map(5, 5, nearest=False).identity and axis_map(4, 8, nearest=True).w.sum() == 0
