"""Sliding-window layout: window positions and the Gaussian weight map, identical to MONAI's.

:func:`window_grid` reproduces ``monai.inferers.sliding_window_inference``: an image axis shorter
than the window is padded (constant 0, ``diff // 2`` voxels before it), the scan interval is
``int(roi * (1 - overlap))`` (at least 1; the whole axis when the window fits exactly), and the last
window of an axis is shifted back to end at the image border (``monai.data.utils.dense_patch_slices``).
:func:`gaussian_weights` is ``monai.data.utils.compute_importance_map(mode="gaussian")``.
Equality with MONAI is tested in ``tests/inference/test_stream.py``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from monai.data.utils import compute_importance_map

Shape3 = tuple[int, int, int]

#: Standard deviation of the Gaussian weight map as a fraction of the window size (nnU-Net, MONAI default).
SIGMA_SCALE = 0.125


def axis_starts(size: int, roi: int, overlap: float) -> list[int]:
    """Window start indices along one axis of the (padded) size ``max(size, roi)``.

    Args:
        size: image size along the axis (voxels).
        roi: window size along the axis (voxels).
        overlap: fraction of overlap between neighbouring windows, ``0 <= overlap < 1``.
    """
    if roi < 1 or size < 1:
        raise ValueError(f"window size {roi} and image size {size} must be >= 1")
    if not 0 <= overlap < 1:
        raise ValueError(f"overlap must be in [0, 1), got {overlap}")
    padded = max(size, roi)
    interval = roi if roi == padded else max(int(roi * (1 - overlap)), 1)
    num = int(math.ceil(padded / interval))
    count = next((d + 1 for d in range(num) if d * interval + roi >= padded), 1)
    return [idx * interval - max(idx * interval + roi - padded, 0) for idx in range(count)]


@dataclass(frozen=True)
class WindowGrid:
    """Windows over a ``(z, y, x)`` image.

    Attributes:
        shape: image shape ``(z, y, x)``.
        roi: window shape ``(z, y, x)`` (``z = 1`` for a slice-wise 2D plan).
        pad_lo: voxels of zero padding before the image on each axis (axes shorter than the window).
        starts: window start indices per axis, in padded coordinates.
    """

    shape: Shape3
    roi: Shape3
    pad_lo: Shape3
    starts: tuple[list[int], list[int], list[int]]

    @property
    def padded_shape(self) -> Shape3:
        return (max(self.shape[0], self.roi[0]), max(self.shape[1], self.roi[1]), max(self.shape[2], self.roi[2]))

    @property
    def n_windows(self) -> int:
        return len(self.starts[0]) * len(self.starts[1]) * len(self.starts[2])

    def inplane_starts(self) -> list[tuple[int, int]]:
        """``(y, x)`` starts of the windows of one z position, in MONAI's order (y outer)."""
        return [(y, x) for y in self.starts[1] for x in self.starts[2]]


def window_grid(shape: Shape3, roi: Shape3, overlap: float) -> WindowGrid:
    """Sliding-window layout of an image ``shape`` with windows ``roi`` (see the module docstring)."""
    pad = tuple(max(r - s, 0) // 2 for s, r in zip(shape, roi, strict=True))
    starts = tuple(axis_starts(s, r, overlap) for s, r in zip(shape, roi, strict=True))
    return WindowGrid(
        shape=(int(shape[0]), int(shape[1]), int(shape[2])),
        roi=(int(roi[0]), int(roi[1]), int(roi[2])),
        pad_lo=(pad[0], pad[1], pad[2]),
        starts=(starts[0], starts[1], starts[2]),
    )


def gaussian_weights(roi: tuple[int, ...], device: torch.device | str = "cpu") -> torch.Tensor:
    """Gaussian blending weights of shape ``roi`` (float32, max 1, min clamped to >= 1e-3), MONAI's map."""
    weights = compute_importance_map(tuple(roi), mode="gaussian", sigma_scale=SIGMA_SCALE, device=device)
    return torch.as_tensor(weights, dtype=torch.float32, device=device)
