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
from typing import Any

import numpy as np
import pydicom
from numpy.typing import NDArray
from pydicom.dataset import Dataset

from medseg.ingest.reasons import IngestError, Reason
from medseg.ingest.stacks import Frame

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
        ) from exc
    n_frames = int(ds.get("NumberOfFrames", 1) or 1)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3 or arr.shape[0] != n_frames:
        raise IngestError(
            Reason.PIXEL_ERROR,
            f"{path}: decoded pixel array has shape {arr.shape}, expected ({n_frames}, rows, cols)",
        )
    return ds, arr


def read_native(frame: Frame) -> NDArray[Any]:
    """Read a native single-frame image straight from its file using the header's pixel layout.

    Unused high bits are masked (unsigned) or sign-extended (signed), as pydicom does.

    Raises:
        IngestError: ``pixel_error`` when the file changed since its header was read or is truncated.
    """
    assert frame.pixel is not None
    offset, bits, stored, signed, _, _, size = frame.pixel
    count = frame.rows * frame.cols
    try:
        if size >= 0 and os.stat(frame.path).st_size != size:
            raise IngestError(
                Reason.PIXEL_ERROR, f"{frame.path}: file changed since its header was read; run ingest again"
            )
        arr = np.fromfile(frame.path, dtype=f"<{'i' if signed else 'u'}{bits // 8}", count=count, offset=offset)
    except OSError as exc:
        raise IngestError(Reason.PIXEL_ERROR, f"{frame.path}: pixel data cannot be read ({exc})") from exc
    if arr.size != count:
        raise IngestError(
            Reason.PIXEL_ERROR, f"{frame.path}: pixel data holds {arr.size} of {count} values (truncated file?)"
        )
    if stored < bits:
        if signed:
            shift = bits - stored
            arr = (arr << shift) >> shift
        else:
            arr &= (1 << stored) - 1
    return arr.reshape(frame.rows, frame.cols)


def read_stack(frames: list[Frame]) -> NDArray[Any]:
    """Decode ``frames`` (already sorted along the normal) into a ``(z, y, x)`` int16/float32 volume."""
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
                )
            raw[z] = np.array(arr[f.frame])
            scale[z] = _rescale(ds, f.frame)
    lo, hi, integral = np.inf, -np.inf, True
    for r, (slope, inter) in zip(raw, scale, strict=True):
        assert r is not None
        vmin, vmax = float(r.min()), float(r.max())
        a, b = sorted((vmin * slope + inter, vmax * slope + inter))
        lo, hi = min(lo, a), max(hi, b)
        integral &= float(slope).is_integer() and float(inter).is_integer() and np.issubdtype(r.dtype, np.integer)
    as_int = integral and lo >= _INT16.min and hi <= _INT16.max
    out = np.empty((len(frames), frames[0].rows, frames[0].cols), dtype=np.int16 if as_int else np.float32)
    for z, (r, (slope, inter)) in enumerate(zip(raw, scale, strict=True)):
        assert r is not None
        if as_int:
            out[z] = (r.astype(np.int64) * int(slope) + int(inter)).astype(np.int16)
        else:
            out[z] = (r.astype(np.float64) * slope + inter).astype(np.float32)
    return out
