"""Logits on the preprocessed grid -> label map on the native grid, plane by plane (bounded memory).

nnU-Net resamples the full ``(C, z, y, x)`` logits back to the native grid (float32, one native
volume per class) and then takes the argmax. :class:`NativeRestorer` gives the same kind of result
(linear interpolation of the logits, nearest neighbour along the plan's anisotropic axis, argmax
on the native grid) without ever holding more than two preprocessed planes and one native plane
of logits: it consumes the z-slabs of :func:`medseg.inference.stream.stream_logits` in order and
writes each native plane's labels as soon as the two preprocessed planes it interpolates between
have arrived.

Grids are extent-aligned like the preprocessing (:mod:`medseg.preprocess.resample`): native voxel
``k`` of the cropped region maps to preprocessed coordinate ``(k + 0.5) * n_pre / n_native - 0.5``
(clamped to the grid). Voxels outside the crop box are background (0).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from medseg.preprocess.crop import BBox, bbox_shape
from medseg.preprocess.resample import nearest_indices

Shape3 = tuple[int, int, int]


@dataclass(frozen=True)
class AxisMap:
    """Per-output-index interpolation along one axis: ``(1 - w) * in[lo] + w * in[hi]``."""

    lo: NDArray[np.intp]
    hi: NDArray[np.intp]
    w: NDArray[np.float32]

    @property
    def identity(self) -> bool:
        return bool(np.array_equal(self.lo, np.arange(len(self.lo))) and not self.w.any())


def axis_map(n_in: int, n_out: int, nearest: bool) -> AxisMap:
    """Interpolation of an ``n_in`` grid onto an extent-aligned ``n_out`` grid (linear or nearest)."""
    if n_in == n_out:
        idx = np.arange(n_out, dtype=np.intp)
        return AxisMap(idx, idx, np.zeros(n_out, dtype=np.float32))
    if nearest:
        idx = nearest_indices(n_in, n_out)
        return AxisMap(idx, idx, np.zeros(n_out, dtype=np.float32))
    coords = np.clip((np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5, 0, n_in - 1)
    lo = np.floor(coords).astype(np.intp)
    hi = np.minimum(lo + 1, n_in - 1)
    return AxisMap(lo, hi, (coords - lo).astype(np.float32))


def _apply(data: NDArray[np.float32], m: AxisMap, axis: int) -> NDArray[np.float32]:
    if m.identity and data.shape[axis] == len(m.lo):
        return data
    out = np.take(data, m.lo, axis=axis)
    if m.w.any():
        shape = [1] * data.ndim
        shape[axis] = len(m.w)
        w = m.w.reshape(shape)
        out *= 1.0 - w
        out += np.take(data, m.hi, axis=axis) * w
    return out


class NativeRestorer:
    """Collects z-slabs of preprocessed-grid logits and writes native-grid labels into ``out``.

    Args:
        pre_shape: shape ``(z, y, x)`` of the preprocessed grid.
        crop_bbox: native voxel ranges ``((z0, z1), (y0, y1), (x0, x1))`` the preprocessed grid covers.
        out: uint8 ``(z, y, x)`` native label array (numpy; zero-initialised by the caller).
        anisotropic_axis: axis interpolated with nearest neighbour (the plan's separate-z axis), if any.
    """

    def __init__(
        self, pre_shape: Shape3, crop_bbox: BBox, out: NDArray[np.uint8], anisotropic_axis: int | None = None
    ) -> None:
        self.pre_shape = pre_shape
        self.crop_bbox = crop_bbox
        self.out = out
        crop = bbox_shape(crop_bbox)
        self.maps = [axis_map(pre_shape[a], crop[a], nearest=anisotropic_axis == a) for a in range(3)]
        self._planes: dict[int, NDArray[np.float32]] = {}
        self._next = 0  # next native (cropped) plane to write
        self._received = 0  # preprocessed planes received so far

    @property
    def done(self) -> bool:
        """True once every native plane of the crop has been written."""
        return self._next >= len(self.maps[0].lo)

    def feed(self, z0: int, logits: NDArray[np.float32]) -> None:
        """Add preprocessed planes ``[z0, z0 + n)`` (``logits`` ``(C, n, y, x)``); slabs must come in order."""
        if z0 != self._received:
            raise ValueError(f"NativeRestorer: expected the slab starting at plane {self._received}, got {z0}")
        for i in range(logits.shape[1]):
            self._planes[z0 + i] = logits[:, i]
        self._received = z0 + logits.shape[1]
        zmap = self.maps[0]
        (z_lo, _), (y_lo, y_hi), (x_lo, x_hi) = self.crop_bbox
        while not self.done and int(zmap.hi[self._next]) < self._received:
            k = self._next
            lo, hi, w = int(zmap.lo[k]), int(zmap.hi[k]), float(zmap.w[k])
            plane = self._planes[lo] if w == 0.0 else (1.0 - w) * self._planes[lo] + w * self._planes[hi]
            plane = _apply(_apply(plane, self.maps[1], 1), self.maps[2], 2)
            self.out[z_lo + k, y_lo:y_hi, x_lo:x_hi] = np.argmax(plane, axis=0).astype(np.uint8)
            self._next += 1
            if not self.done:
                keep = int(zmap.lo[self._next])
                for old in [p for p in self._planes if p < keep]:
                    del self._planes[old]
        # own copies of the planes still needed, so the caller's slab array can be freed
        self._planes = {z: np.array(p, dtype=np.float32, copy=True) for z, p in self._planes.items()}
        if self._received >= self.pre_shape[0] and not self.done:
            raise RuntimeError(f"NativeRestorer: all {self._received} planes received but native planes are missing")
