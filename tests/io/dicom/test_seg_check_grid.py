"""seg_check.place_on_grid: a decoded SEG volume placed on the case grid through its own affine."""

from __future__ import annotations

import numpy as np

from medseg.geometry import Geometry
from medseg.io.dicom.seg_check import place_on_grid


def _oblique() -> Geometry:
    a = 0.3
    rot = np.array([[np.cos(a), 0.0, np.sin(a)], [0.0, 1.0, 0.0], [-np.sin(a), 0.0, np.cos(a)]])
    return Geometry.create((3.0, 1.2, 0.9), (10.0, -5.0, 2.0), rot)


def test_flipped_transposed_block_lands_on_its_voxels() -> None:
    geometry = _oblique()
    label = np.random.default_rng(0).integers(0, 3, size=(6, 8, 10)).astype(np.uint8)
    # a block of slices 1..4, flipped along z, with rows and columns swapped:
    # arr[i, j, k] = label[4 - i, k, j] for rows 0..7, i.e. our index = (4 - i, k, j)
    arr = label[1:5][::-1].transpose(0, 2, 1)
    to_ours = np.array([[-1, 0, 0, 4], [0, 0, 1, 0], [0, 1, 0, 0], [0, 0, 0, 1]], dtype=float)
    placed = place_on_grid(arr, geometry.affine_lps() @ to_ours, geometry, label.shape)
    assert not isinstance(placed, str), placed
    want = np.zeros_like(label)
    want[1:5] = label[1:5]
    np.testing.assert_array_equal(placed, want)


def test_grid_that_misses_the_voxels_or_the_volume_is_reported() -> None:
    geometry = _oblique()
    arr = np.ones((2, 8, 10), np.uint8)
    half_voxel = np.eye(4)
    half_voxel[1, 3] = 0.5
    placed = place_on_grid(arr, geometry.affine_lps() @ half_voxel, geometry, (6, 8, 10))
    assert isinstance(placed, str) and "does not fall on the source volume's voxels" in placed
    beyond = np.eye(4)
    beyond[0, 3] = 5  # slices 5 and 6 of a 6-slice volume
    placed = place_on_grid(arr, geometry.affine_lps() @ beyond, geometry, (6, 8, 10))
    assert isinstance(placed, str) and "outside the source volume of shape (6, 8, 10)" in placed
