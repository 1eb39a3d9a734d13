"""Crop-to-nonzero (nnU-Net): the bounding box of the filled nonzero region of the image."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

#: ``((z0, z1), (y0, y1), (x0, x1))``: half-open voxel ranges ``[start, stop)`` per axis.
BBox = tuple[tuple[int, int], tuple[int, int], tuple[int, int]]


def nonzero_mask(image: NDArray[Any]) -> NDArray[np.bool_]:
    """Voxels that are nonzero, with enclosed holes filled; same shape as ``image``."""
    return np.asarray(ndimage.binary_fill_holes(image != 0), dtype=bool)


def full_bbox(shape: tuple[int, ...]) -> BBox:
    """The box covering a whole ``(z, y, x)`` volume."""
    return ((0, int(shape[0])), (0, int(shape[1])), (0, int(shape[2])))


def bbox_of_mask(mask: NDArray[np.bool_]) -> BBox:
    """Tight bounding box of ``mask`` (the whole volume when the mask is empty)."""
    if not mask.any():
        return full_bbox(mask.shape)
    ranges = []
    for axis in range(3):
        other = tuple(a for a in range(3) if a != axis)
        hit = np.flatnonzero(mask.any(axis=other))
        ranges.append((int(hit[0]), int(hit[-1]) + 1))
    return (ranges[0], ranges[1], ranges[2])


def bbox_slices(bbox: BBox) -> tuple[slice, slice, slice]:
    """Numpy index of ``bbox``."""
    return (slice(*bbox[0]), slice(*bbox[1]), slice(*bbox[2]))


def bbox_shape(bbox: BBox) -> tuple[int, int, int]:
    """Shape (voxels) of the region ``bbox``."""
    return (bbox[0][1] - bbox[0][0], bbox[1][1] - bbox[1][0], bbox[2][1] - bbox[2][0])
