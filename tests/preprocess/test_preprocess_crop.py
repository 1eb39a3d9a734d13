"""medseg.preprocess.crop: the nonzero mask (holes filled) and its bounding box."""

from __future__ import annotations

import numpy as np

from medseg.preprocess.crop import bbox_of_mask, bbox_shape, bbox_slices, full_bbox, nonzero_mask


def test_nonzero_mask_fills_enclosed_holes() -> None:
    image = np.zeros((5, 7, 7), np.float32)
    image[1:4, 1:6, 1:6] = 3.0
    image[2, 3, 3] = 0.0  # a hole inside the body
    mask = nonzero_mask(image)
    assert mask.dtype == bool and mask[2, 3, 3] and int(mask.sum()) == 3 * 5 * 5


def test_bbox_of_mask_is_tight_and_the_whole_volume_when_empty() -> None:
    mask = np.zeros((6, 8, 10), bool)
    mask[2, 3, 4] = mask[4, 5, 8] = True
    bbox = bbox_of_mask(mask)
    assert bbox == ((2, 5), (3, 6), (4, 9))
    assert bbox_shape(bbox) == (3, 3, 5)
    assert mask[bbox_slices(bbox)].sum() == mask.sum()
    assert bbox_of_mask(np.zeros((6, 8, 10), bool)) == full_bbox((6, 8, 10)) == ((0, 6), (0, 8), (0, 10))
