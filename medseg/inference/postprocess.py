"""Label-map postprocessing on the native grid: keep the largest connected component per class."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

#: 26-connectivity (faces, edges and corners), as nnU-Net's ``remove_all_but_largest_component``.
FULL_CONNECTIVITY = np.ones((3, 3, 3), dtype=bool)


def _bbox(mask: NDArray[np.bool_]) -> tuple[slice, slice, slice]:
    out = []
    for axis in range(3):
        other = tuple(a for a in range(3) if a != axis)
        idx = np.flatnonzero(mask.any(axis=other))
        out.append(slice(int(idx[0]), int(idx[-1]) + 1))
    return out[0], out[1], out[2]


def keep_largest_component(
    label: NDArray[np.uint8], classes: Sequence[int] | None = None, connectivity: NDArray[Any] | None = None
) -> dict[int, int]:
    """Per class, set every voxel outside the class's largest connected component to background (in place).

    Components are found with :func:`scipy.ndimage.label` inside the class's bounding box (the
    component map is ``int32`` of that box only). Ties keep the component met first in C order.

    Args:
        label: ``(z, y, x)`` uint8 label map on the native grid; modified in place.
        classes: class values to process; default every non-zero value present.
        connectivity: 3x3x3 structuring element; default 26-connectivity.

    Returns:
        ``{class: number of voxels removed}``.
    """
    if label.ndim != 3:
        raise ValueError(f"keep_largest_component expects a (z, y, x) label map, got shape {label.shape}")
    structure = FULL_CONNECTIVITY if connectivity is None else np.asarray(connectivity, dtype=bool)
    values = [int(v) for v in np.unique(label) if v != 0] if classes is None else [int(c) for c in classes]
    removed: dict[int, int] = {}
    for value in values:
        mask = label == value
        if not mask.any():
            removed[value] = 0
            continue
        box = _bbox(mask)
        sub = mask[box]
        del mask
        components, n = ndimage.label(sub, structure=structure)
        if n <= 1:
            removed[value] = 0
            continue
        sizes = np.bincount(components.ravel())
        sizes[0] = 0
        drop = sub & (components != int(np.argmax(sizes)))
        removed[value] = int(drop.sum())
        region = label[box]
        region[drop] = 0
    return removed
