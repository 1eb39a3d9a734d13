"""Slab-wise crop -> normalise -> resample of one volume, with memory independent of its length.

The source is any ``(z, y, x)`` array that can be sliced (a numpy array or a lazily read Zarr
array); the output goes into a *sink* with the same slicing interface (a numpy array, or the Zarr
array of a store being written). Working memory, whatever the number of slices:

* one chunk-aligned slab of native slices (the source's z-chunk, e.g. 64 slices);
* :data:`INPLANE_BATCH` slices at a time through the in-plane cubic passes (float32);
* for a cubic z resampling, a sliding window of ``Z_BLOCK * n_native / n_new + 2 * Z_MARGIN``
  in-plane-resampled slices and its prefiltered copy (see :func:`_cubic_z_into`);
* one z-chunk of output rows before it is written to the sink.

Whole-volume arrays are only the ZSCORE nonzero mask of the crop (bool, 1 byte per native voxel,
not used for CT) and the output label map (uint8, 1 byte per output voxel).

The decomposition into blocks is fixed (it does not follow the source or sink chunking) and every
pass works on whole lines, so in-memory and streamed runs give bit-identical results.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

from medseg.plan import Normalization, Plan
from medseg.preprocess.crop import BBox, bbox_shape, full_bbox
from medseg.preprocess.resample import nearest_indices, resample_to_shape
from medseg.preprocess.separable import (
    apply_taps_axis0,
    cubic_axis,
    cubic_taps,
    linear_axis,
    linear_taps,
    prefilter_window_axis0,
)

Shape3 = tuple[int, int, int]
#: native slices per read when the source has no chunking of its own (numpy arrays).
DEFAULT_SLAB = 32
#: output slices per block of the cubic z pass, and native slices of context on each side of it.
Z_BLOCK = 32
Z_MARGIN = 20
#: slices resampled in-plane at a time (bounds the float32 temporaries; results do not depend on it).
INPLANE_BATCH = 8
_EPS = 1e-8


class ArraySource(Protocol):
    """A ``(z, y, x)`` array readable by slices (numpy array or ``zarr.Array``)."""

    @property
    def shape(self) -> tuple[int, ...]: ...

    def __getitem__(self, key: Any) -> Any: ...


class ArraySink(Protocol):
    """A ``(z, y, x)`` array writable by slices (numpy array or ``zarr.Array``)."""

    @property
    def shape(self) -> tuple[int, ...]: ...

    def __setitem__(self, key: Any, value: Any) -> None: ...


def slab_size(src: ArraySource) -> int:
    """Native slices per read: the source's z-chunk (each chunk is decoded once), else a default."""
    chunks = getattr(src, "chunks", None)
    if isinstance(chunks, tuple) and chunks and isinstance(chunks[0], int):
        return max(1, int(chunks[0]))
    return DEFAULT_SLAB


def _aligned(start: int, stop: int, step: int) -> list[tuple[int, int]]:
    """``[start, stop)`` cut at the multiples of ``step`` (chunk-aligned reads)."""
    bounds, lo = [], start
    while lo < stop:
        hi = min(stop, (lo // step + 1) * step)
        bounds.append((lo, hi))
        lo = hi
    return bounds


class SlabReader:
    """Reads rows ``[lo, hi)`` (crop coordinates) of the crop of ``src``, whole chunks at a time.

    Keeps the last chunk-aligned window so that consecutive overlapping requests decode every
    source chunk once.
    """

    def __init__(self, src: ArraySource, bbox: BBox, step: int | None = None) -> None:
        self.src, self.bbox = src, bbox
        self.step = step or slab_size(src)
        self._lo, self._hi = 0, 0
        self._win: NDArray[Any] | None = None

    def _load(self, z0: int, z1: int) -> NDArray[Any]:
        (bz, _), (y0, y1), (x0, x1) = self.bbox
        return np.asarray(self.src[bz + z0 : bz + z1, y0:y1, x0:x1])

    def rows(self, lo: int, hi: int) -> NDArray[Any]:
        """Crop rows ``[lo, hi)``, shape ``(hi - lo, y_crop, x_crop)`` (a view into the window)."""
        if self._win is None or lo < self._lo or hi > self._hi:
            bz0, bz1 = self.bbox[0]
            a = max(0, ((bz0 + lo) // self.step) * self.step - bz0)
            b = min(bz1 - bz0, -(-(bz0 + hi) // self.step) * self.step - bz0)
            if self._win is not None and a < self._hi and b > self._lo:  # keep the overlap
                parts = [self._load(a, self._lo)] if a < self._lo else []
                parts.append(self._win[max(a, self._lo) - self._lo : min(b, self._hi) - self._lo])
                if b > self._hi:
                    parts.append(self._load(self._hi, b))
                self._win = np.concatenate(parts) if len(parts) > 1 else parts[0]
            else:
                self._win = self._load(a, b)
            self._lo, self._hi = a, b
        assert self._win is not None
        return self._win[lo - self._lo : hi - self._lo]


def nonzero_bbox(src: ArraySource, step: int | None = None) -> BBox:
    """Bounding box of the nonzero voxels, read slab by slab (whole volume when all zero).

    Equals the box of the hole-filled nonzero mask (filled holes are enclosed, hence inside).
    """
    shape = _shape3(src.shape)
    any_z = np.zeros(shape[0], bool)
    any_y = np.zeros(shape[1], bool)
    any_x = np.zeros(shape[2], bool)
    for z0, z1 in _aligned(0, shape[0], step or slab_size(src)):
        nz = np.asarray(src[z0:z1]) != 0
        any_z[z0:z1] = nz.any(axis=(1, 2))
        any_y |= nz.any(axis=(0, 2))
        any_x |= nz.any(axis=(0, 1))
    if not any_z.any():
        return full_bbox(shape)
    ranges = [(int(np.flatnonzero(a)[0]), int(np.flatnonzero(a)[-1]) + 1) for a in (any_z, any_y, any_x)]
    return (ranges[0], ranges[1], ranges[2])


def filled_mask(src: ArraySource, bbox: BBox, step: int | None = None) -> NDArray[np.bool_]:
    """Hole-filled nonzero mask of the crop ``bbox`` (nnU-Net's nonzero mask), built slab by slab."""
    reader = SlabReader(src, bbox, step)
    mask = np.zeros(bbox_shape(bbox), dtype=bool)
    for z0, z1 in _aligned(0, mask.shape[0], reader.step):
        mask[z0:z1] = reader.rows(z0, z1) != 0
    return np.asarray(ndimage.binary_fill_holes(mask), dtype=bool)


Normaliser = Callable[[NDArray[np.float32], "NDArray[np.bool_] | None"], None]


def make_normaliser(
    plan: Plan, reader: SlabReader, mask: NDArray[np.bool_] | None
) -> tuple[Normaliser, dict[str, float]]:
    """In-place normalisation of float32 slabs, as :func:`medseg.preprocess.normalize.normalize`.

    CT uses the plan's dataset statistics. ZSCORE computes the mean and std inside ``mask`` (the
    whole crop when the mask is None, empty or full) with two passes over the slabs, summing per
    slice in float64 (independent of the slab size).

    Returns:
        ``normalise(block, mask_block)`` and the statistics used (``{"mean", "std"}``).
    """
    if plan.normalization == Normalization.CT:
        if plan.clip_range is None or plan.intensity_mean is None or plan.intensity_std is None:
            raise ValueError(
                f"plan {plan.plan_hash()} uses CT normalisation but lacks"
                " clip_range/intensity_mean/intensity_std; re-run `medseg preprocess` to rebuild the plan"
            )
        lo, hi = np.float32(plan.clip_range[0]), np.float32(plan.clip_range[1])
        mean32, std32 = np.float32(plan.intensity_mean), np.float32(max(plan.intensity_std, _EPS))

        def _ct(block: NDArray[np.float32], _mask: NDArray[np.bool_] | None) -> None:
            np.clip(block, lo, hi, out=block)
            block -= mean32
            block /= std32

        return _ct, {"mean": float(plan.intensity_mean), "std": float(plan.intensity_std)}

    use_mask = mask if mask is not None and mask.any() and not mask.all() else None
    n_slices = bbox_shape(reader.bbox)[0]
    sums = np.zeros(n_slices)
    counts = np.zeros(n_slices)
    for z0, z1 in _aligned(0, n_slices, reader.step):
        block = reader.rows(z0, z1)
        for k in range(z1 - z0):
            values = block[k][use_mask[z0 + k]] if use_mask is not None else block[k]
            sums[z0 + k] = values.sum(dtype=np.float64)
            counts[z0 + k] = values.size
    n = max(counts.sum(), 1.0)
    mean = float(sums.sum() / n)
    for z0, z1 in _aligned(0, n_slices, reader.step):
        block = reader.rows(z0, z1)
        for k in range(z1 - z0):
            values = block[k][use_mask[z0 + k]] if use_mask is not None else block[k]
            sums[z0 + k] = np.square(values.astype(np.float64) - mean).sum()
    std = float(np.sqrt(sums.sum() / n))
    mean32, std32 = np.float32(mean), np.float32(max(std, _EPS))

    def _zscore(block: NDArray[np.float32], mask_block: NDArray[np.bool_] | None) -> None:
        block -= mean32
        block /= std32
        if use_mask is not None and mask_block is not None:
            block[~mask_block] = 0.0

    return _zscore, {"mean": mean, "std": std}


def _shape3(shape: tuple[int, ...]) -> Shape3:
    return (int(shape[0]), int(shape[1]), int(shape[2]))


def _inplane(block: NDArray[np.float32], new_yx: tuple[int, int], order: int) -> NDArray[np.float32]:
    """Resample ``(s, y, x)`` within each slice (shrinking axis first); order 3 cubic or 1 linear."""
    fn = cubic_axis if order == 3 else linear_axis
    axes = sorted((1, 2), key=lambda a: new_yx[a - 1] / block.shape[a])
    out = block
    for a in axes:
        out = fn(out, a, new_yx[a - 1])
    return out


@dataclass(frozen=True)
class ResamplePlan:
    """How one cropped volume maps to the plan grid."""

    crop_shape: Shape3
    new_shape: Shape3
    anisotropic_axis: int | None

    @property
    def z_mode(self) -> str:
        """``"same"`` (no z change), ``"nearest"`` (separate z) or ``"interp"`` (spline / linear)."""
        if self.crop_shape[0] == self.new_shape[0]:
            return "same"
        return "nearest" if self.anisotropic_axis == 0 else "interp"

    @property
    def streamable(self) -> bool:
        """False for an anisotropic in-plane axis (resampled in memory instead)."""
        return self.anisotropic_axis in (None, 0)


def _z_blocks(n: int, sink: ArraySink, default: int = DEFAULT_SLAB) -> list[tuple[int, int]]:
    chunks = getattr(sink, "chunks", None)
    step = int(chunks[0]) if isinstance(chunks, tuple) and chunks else default
    return _aligned(0, n, max(1, step))


def resample_image_into(
    reader: SlabReader,
    rp: ResamplePlan,
    normalise: Normaliser,
    mask: NDArray[np.bool_] | None,
    sink: ArraySink,
) -> None:
    """Normalise and cubic-resample the crop of ``reader`` into ``sink`` (shape ``rp.new_shape``).

    z is resampled last: by nearest neighbour (separate z) or not at all, straight from the slabs;
    with a cubic spline through a sliding window of in-plane-resampled slices.
    """
    if tuple(sink.shape) != rp.new_shape:
        raise ValueError(f"sink shape {tuple(sink.shape)} != planned shape {rp.new_shape}")
    zc = rp.crop_shape[0]
    new_yx = (rp.new_shape[1], rp.new_shape[2])

    def native(z0: int, z1: int, picks: NDArray[np.intp] | None = None) -> NDArray[np.float32]:
        """Normalised crop rows ``[z0, z1)`` (or only ``picks`` among them), float32."""
        rows = reader.rows(z0, z1)
        block = np.array(rows if picks is None else rows[picks - z0], dtype=np.float32)
        normalise(block, None if mask is None else mask[z0:z1] if picks is None else mask[picks])
        return block

    if not rp.streamable:
        whole = native(0, zc)
        sink[...] = resample_to_shape(whole, rp.new_shape, order=3, anisotropic_axis=rp.anisotropic_axis)
        return
    if rp.z_mode in ("same", "nearest"):
        picks = np.arange(zc) if rp.z_mode == "same" else nearest_indices(zc, rp.new_shape[0])
        writer = _RowWriter(sink, new_yx)
        for o0, o1 in _aligned(0, rp.new_shape[0], INPLANE_BATCH):
            unique, inverse = np.unique(picks[o0:o1], return_inverse=True)
            block = _inplane(native(int(unique[0]), int(unique[-1]) + 1, unique), new_yx, 3)
            writer.put(block[inverse.ravel()])
        return
    _cubic_z_into(reader, rp, native, sink)


class _RowWriter:
    """Collects output rows and writes them to the sink in blocks aligned with its z-chunks."""

    def __init__(self, sink: ArraySink, row_shape: tuple[int, int]) -> None:
        self.sink = sink
        self.blocks = _z_blocks(int(sink.shape[0]), sink)
        self.buf = np.empty((self.blocks[0][1] - self.blocks[0][0], *row_shape), dtype=np.float32)
        self.next = 0  # index into blocks
        self.filled = 0  # rows of the current block already in buf

    def put(self, rows: NDArray[np.float32]) -> None:
        while len(rows):
            b0, b1 = self.blocks[self.next]
            take = min(len(rows), b1 - b0 - self.filled)
            self.buf[self.filled : self.filled + take] = rows[:take]
            self.filled += take
            rows = rows[take:]
            if self.filled == b1 - b0:
                self.sink[b0:b1] = self.buf[: b1 - b0]
                self.next += 1
                self.filled = 0


def _cubic_z_into(
    reader: SlabReader,
    rp: ResamplePlan,
    native: Callable[[int, int], NDArray[np.float32]],
    sink: ArraySink,
) -> None:
    """Cubic z resampling through a sliding window of in-plane-resampled slices.

    Output slices are computed in fixed blocks of :data:`Z_BLOCK`; each block prefilters the
    native window it needs plus :data:`Z_MARGIN` slices on each side (true mirror boundaries at
    the volume ends). The B-spline prefilter's influence decays as ``0.268**distance``, so the
    margin makes the result equal to a whole-column prefilter up to float32 rounding, while only
    ``Z_BLOCK * n_native / n_new + 2 * Z_MARGIN`` in-plane slices are held. Each native slice is
    resampled in-plane exactly once. The decomposition does not depend on the source or sink
    chunking, so in-memory and streamed runs give bit-identical results.
    """
    zc, nz = rp.crop_shape[0], rp.new_shape[0]
    new_yx = (rp.new_shape[1], rp.new_shape[2])
    idx, w = cubic_taps(zc, nz)
    window: dict[int, NDArray[np.float32]] = {}  # native index -> in-plane-resampled slice
    done = 0  # native slices [0, done) have been resampled in-plane
    writer = _RowWriter(sink, new_yx)
    for o0 in range(0, nz, Z_BLOCK):
        o1 = min(nz, o0 + Z_BLOCK)
        lo = max(0, int(idx[o0:o1].min()) - Z_MARGIN)
        hi = min(zc, int(idx[o0:o1].max()) + 1 + Z_MARGIN)
        for k in [k for k in window if k < lo]:
            del window[k]
        while done < hi:
            stop = min(hi, done + INPLANE_BATCH)
            block = _inplane(native(done, stop), new_yx, 3)
            for k in range(done, stop):
                window[k] = np.array(block[k - done], dtype=np.float32, order="C")  # own memory
            done = stop
        coeffs = np.stack([window[k] for k in range(lo, hi)])
        prefilter_window_axis0(coeffs)
        rows = apply_taps_axis0(coeffs, idx[o0:o1] - lo, w[o0:o1])
        writer.put(rows)


def resample_labels_stream(
    reader: SlabReader, rp: ResamplePlan, classes: list[int]
) -> NDArray[np.uint8]:
    """One-hot linear label resampling of the crop of ``reader`` (>= 0.5 wins, higher classes last).

    Like :func:`medseg.preprocess.resample.resample_labels_to_shape`: nearest along a separate-z
    axis, identity when the shape does not change. Works in blocks of output slices; a class is
    only interpolated in blocks where it occurs.

    Returns:
        uint8 ``rp.new_shape``.
    """
    zc = rp.crop_shape[0]
    if rp.crop_shape == rp.new_shape:
        return np.ascontiguousarray(reader.rows(0, zc), dtype=np.uint8)
    if not rp.streamable:
        from medseg.preprocess.resample import resample_labels_to_shape

        return resample_labels_to_shape(reader.rows(0, zc), rp.new_shape, rp.anisotropic_axis)
    nz = rp.new_shape[0]
    new_yx = (rp.new_shape[1], rp.new_shape[2])
    out = np.zeros(rp.new_shape, dtype=np.uint8)
    taps = linear_taps(zc, nz) if rp.z_mode == "interp" else None
    picks = nearest_indices(zc, nz) if rp.z_mode == "nearest" else np.arange(zc)
    for o0, o1 in _aligned(0, nz, INPLANE_BATCH):
        if taps is not None:
            idx, w = taps[0][o0:o1], taps[1][o0:o1]
            lo, hi = int(idx.min()), int(idx.max()) + 1
        else:
            sel = picks[o0:o1]
            lo, hi = int(sel.min()), int(sel.max()) + 1
        block = reader.rows(lo, hi)
        out_block = out[o0:o1]
        for cls in sorted(c for c in classes if c != 0):
            onehot = block == cls
            if not onehot.any():
                continue
            planar = _inplane(onehot.astype(np.float32), new_yx, 1)
            if taps is not None:
                col = idx - lo
                res = planar[col[:, 0]] * w[:, 0, None, None] + planar[col[:, 1]] * w[:, 1, None, None]
            else:
                res = planar[picks[o0:o1] - lo]
            out_block[res >= 0.5] = cls
    return out


def label_counts(block: NDArray[Any]) -> NDArray[np.int64]:
    """Voxel count per label value ``0..max`` of a uint8 block (byte compares, no int64 copy)."""
    arr = np.asarray(block)
    if arr.size == 0:
        return np.zeros(0, dtype=np.int64)
    top = int(arr.max())
    return np.asarray([np.count_nonzero(arr == v) for v in range(top + 1)], dtype=np.int64)


def label_values(reader: SlabReader) -> list[int]:
    """Sorted label values present in the crop of ``reader`` (uint8 labels), read slab by slab."""
    counts = np.zeros(256, dtype=np.int64)
    n = bbox_shape(reader.bbox)[0]
    for z0, z1 in _aligned(0, n, reader.step):
        c = label_counts(reader.rows(z0, z1))
        counts[: len(c)] += c
    return [int(v) for v in np.flatnonzero(counts)]


def max_label(reader: SlabReader) -> int:
    """Largest label value in the crop of ``reader`` (0 when empty)."""
    n = bbox_shape(reader.bbox)[0]
    top = 0
    for z0, z1 in _aligned(0, n, reader.step):
        rows = reader.rows(z0, z1)
        if rows.size:
            top = max(top, int(rows.max()))
    return top
