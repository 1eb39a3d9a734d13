"""Read the pixels of a validated stack into a ``(z, y, x)`` volume of modality values.

RescaleSlope/RescaleIntercept (top level or, for enhanced multi-frame, the per-frame / shared
PixelValueTransformationSequence) are applied. The result is ``int16`` when every rescaled value
is an integer inside the int16 range (CT in HU, most MR), else ``float32``. Compressed transfer
syntaxes are decoded by pydicom's pylibjpeg/openjpeg/rle plugins.
"""

from __future__ import annotations

import os
import warnings
from collections import defaultdict
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from medseg.io.dicom.frame import Frame
from medseg.io.reasons import IngestError, Reason

if TYPE_CHECKING:  # pydicom is imported on first use: native stacks are read without it
    from pydicom.dataset import Dataset

_INT16 = np.iinfo(np.int16)


def _rescale(ds: Dataset, frame: int) -> tuple[float, float]:
    """(slope, intercept) of one frame."""
    groups: list[Any] = []
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    if per_frame is not None and frame < len(per_frame):
        groups.append(per_frame[frame])
    shared = ds.get("SharedFunctionalGroupsSequence")
    if shared:
        groups.append(shared[0])
    for g in groups:
        seq = g.get("PixelValueTransformationSequence")
        if seq:
            item = seq[0]
            return float(item.get("RescaleSlope", 1.0) or 1.0), float(item.get("RescaleIntercept", 0.0) or 0.0)
    return float(ds.get("RescaleSlope", 1.0) or 1.0), float(ds.get("RescaleIntercept", 0.0) or 0.0)


def decode_file(path: str) -> tuple[Dataset, NDArray[Any]]:
    """Read a file with pixels; return the dataset and its frames as ``(n_frames, rows, cols)``."""
    import pydicom

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(path)
            arr = np.asarray(ds.pixel_array)
    except Exception as exc:  # noqa: BLE001 - any decoder failure quarantines the series
        raise IngestError(
            Reason.PIXEL_ERROR,
            f"{path}: pixel data cannot be decoded ({type(exc).__name__}: "
            f"{exc}); check the pylibjpeg plugins or re-export the file "
            "uncompressed",
            path=path,
        ) from exc
    n_frames = int(ds.get("NumberOfFrames", 1) or 1)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3 or arr.shape[0] != n_frames:
        raise IngestError(
            Reason.PIXEL_ERROR,
            f"{path}: decoded pixel array has shape {arr.shape}, expected ({n_frames}, rows, cols)",
            path=path,
        )
    return ds, arr


def _native_dtype(frame: Frame) -> np.dtype[Any]:
    assert frame.pixel is not None
    _, bits, _, signed, _, _, _ = frame.pixel
    return np.dtype(f"<{'i' if signed else 'u'}{bits // 8}")


def _read_into(frame: Frame, dest: NDArray[Any]) -> None:
    """Read ``frame``'s native pixel values into the contiguous array ``dest`` (one ``preadv``)."""
    assert frame.pixel is not None
    offset, size = frame.pixel[0], frame.pixel[6]
    try:
        fd = os.open(frame.path, os.O_RDONLY)
        try:
            if size >= 0 and os.fstat(fd).st_size != size:
                raise IngestError(
                    Reason.PIXEL_ERROR, f"{frame.path}: file changed since its header was read; run ingest again",
                    path=frame.path,
                )
            got = os.preadv(fd, [dest.data], offset)
        finally:
            os.close(fd)
    except OSError as exc:
        raise IngestError(Reason.PIXEL_ERROR, f"{frame.path}: pixel data cannot be read ({exc})",
                          path=frame.path) from exc
    if got != dest.nbytes:
        raise IngestError(
            Reason.PIXEL_ERROR,
            f"{frame.path}: pixel data holds {got // dest.itemsize} of {dest.size} values (truncated file?)",
            path=frame.path,
        )


def _mask_unused_bits(arr: NDArray[Any], frame: Frame) -> NDArray[Any]:
    """Mask (unsigned) or sign-extend (signed) the bits above BitsStored, as pydicom does."""
    assert frame.pixel is not None
    _, bits, stored, signed, _, _, _ = frame.pixel
    if stored >= bits:
        return arr
    if signed:
        shift = bits - stored
        return (arr << shift) >> shift
    arr &= (1 << stored) - 1
    return arr


def read_native(frame: Frame) -> NDArray[Any]:
    """Read a native single-frame image straight from its file using the header's pixel layout.

    Unused high bits are masked (unsigned) or sign-extended (signed), as pydicom does.

    Raises:
        IngestError: ``pixel_error`` when the file changed since its header was read or is truncated.
    """
    arr = np.empty((frame.rows, frame.cols), dtype=_native_dtype(frame))
    _read_into(frame, arr)
    return _mask_unused_bits(arr, frame)


def _native_stack(frames: list[Frame]) -> NDArray[Any] | None:
    """The raw values of a stack of native single-frame files with one pixel layout, or None."""
    first = frames[0]
    if first.pixel is None:
        return None
    layout = first.pixel[1:4]
    paths = set()
    for f in frames:
        if f.pixel is None or f.pixel[1:4] != layout or (f.rows, f.cols) != (first.rows, first.cols):
            return None
        paths.add(f.path)
    if len(paths) != len(frames):
        return None
    out = np.empty((len(frames), first.rows, first.cols), dtype=_native_dtype(first))
    for z, f in enumerate(frames):
        _read_into(f, out[z])
    return _mask_unused_bits(out, first)


def _decoded_stack(frames: list[Frame]) -> tuple[list[NDArray[Any]], list[tuple[float, float]]]:
    """Raw values and (slope, intercept) per slice, decoding each file once (pydicom for compressed/multi-frame)."""
    by_path: dict[str, list[int]] = defaultdict(list)
    for z, f in enumerate(frames):
        by_path[f.path].append(z)
    raw: list[NDArray[Any] | None] = [None] * len(frames)
    scale: list[tuple[float, float]] = [(1.0, 0.0)] * len(frames)
    for path, zs in by_path.items():
        first = frames[zs[0]]
        if len(zs) == 1 and first.pixel is not None:
            raw[zs[0]] = read_native(first)
            scale[zs[0]] = (first.pixel[4], first.pixel[5])
            continue
        ds, arr = decode_file(path)
        for z in zs:
            f = frames[z]
            if f.frame >= arr.shape[0] or arr.shape[1:] != (f.rows, f.cols):
                raise IngestError(
                    Reason.PIXEL_ERROR,
                    f"{path}: frame {f.frame} of shape {arr.shape[1:]} does not match the header ({f.rows}, {f.cols})",
                    path=path,
                )
            raw[z] = np.array(arr[f.frame])
            scale[z] = _rescale(ds, f.frame)
    return [r for r in raw if r is not None], scale


def read_stack(frames: list[Frame]) -> NDArray[Any]:
    """Decode ``frames`` (already sorted along the normal) into a ``(z, y, x)`` int16/float32 volume."""
    native = _native_stack(frames)
    if native is not None:
        scale = [(f.pixel[4], f.pixel[5]) for f in frames if f.pixel is not None]
        return _modality_values(native, scale)
    raw, scale = _decoded_stack(frames)
    return _modality_values(np.stack(raw), scale)  # mixed dtypes promote (uint16 + int16 -> int32)


def _modality_values(raw: NDArray[Any], scale: list[tuple[float, float]]) -> NDArray[Any]:
    """``raw * slope + intercept`` per slice: int16 when every value is an integer in the int16 range, else float32.

    ``raw`` is consumed (its buffer may be reused for the result).
    """
    slopes = np.array([s for s, _ in scale], dtype=np.float64)
    inters = np.array([i for _, i in scale], dtype=np.float64)
    integral = (
        np.issubdtype(raw.dtype, np.integer)
        and bool(np.all(slopes == np.round(slopes)))
        and bool(np.all(inters == np.round(inters)))
    )
    if bool(np.all(slopes == slopes[0]) and np.all(inters == inters[0])):
        ends = np.array([raw.min(), raw.max()], dtype=np.float64) * slopes[0] + inters[0]
    else:
        ends = np.concatenate([raw.min(axis=(1, 2)) * slopes + inters, raw.max(axis=(1, 2)) * slopes + inters])
    if integral and ends.min() >= _INT16.min and ends.max() <= _INT16.max:
        # int16 arithmetic wraps modulo 2**16 and every result fits int16, so the wrapped
        # intermediate values (uint16 above 32767, products) still give the exact result
        out = raw.astype(np.int16, copy=False)
        if np.any(slopes != 1.0):
            out *= slopes.astype(np.int64).astype(np.int16)[:, None, None]
        if np.any(inters != 0.0):
            out += inters.astype(np.int64).astype(np.int16)[:, None, None]
        return out
    return (raw.astype(np.float64) * slopes[:, None, None] + inters[:, None, None]).astype(np.float32)
