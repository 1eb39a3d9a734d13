"""Read a native-encoded DICOM SEG in one ``struct`` walk: segments, frame placement and frames.

pydicom builds a Dataset per functional-group item and decodes the whole file, ~1 ms for a small
SEG; an archive has one SEG per labelled series. :func:`scan_seg` walks the file once with the
fast-header reader and keeps what rasterising needs (:class:`SegContent`). It returns None for
anything unusual, and the caller falls back to pydicom: encapsulated (compressed) pixel data,
big-endian or deflated files, non-ASCII labels, frames without a plane position (placed by their
source image reference instead), bit depths other than 1/8/16. The test-suite checks that both
readers give the same content on every SEG it has.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from medseg.io.dicom.fast_walk import (
    IMPLICIT_LE,
    PIXEL_DATA,
    UNDEFINED_LENGTH,
    Decline,
    FileReader,
    dataset_start,
    read_element,
    walk_dataset,
)
from medseg.io.dicom.frame_groups import GROUP_LEAVES, GROUP_SEQS, frame_table

_SEGMENTS, _SEGMENT_NUMBER, _SEGMENT_LABEL = 0x00620002, 0x00620004, 0x00620005
_SEG_TYPE, _MAX_FRACTIONAL, _N_FRAMES = 0x00620001, 0x0062000E, 0x00280008
_ROWS, _COLS, _BITS, _SIGNED = 0x00280010, 0x00280011, 0x00280100, 0x00280103
_SEQS = frozenset({*GROUP_SEQS, _SEGMENTS})
_LEAVES = frozenset({*GROUP_LEAVES, _SEGMENT_NUMBER, _SEGMENT_LABEL, _SEG_TYPE, _MAX_FRACTIONAL})
_LEAVES |= {_N_FRAMES, _ROWS, _COLS, _BITS, _SIGNED}


@dataclass
class SegContent:
    """What rasterising a DICOM SEG needs.

    Attributes:
        segments: non-background ``(segment number, label)`` pairs in segment-number order.
        seg_type: ``BINARY``, ``FRACTIONAL`` or ``LABELMAP``.
        max_fractional: MaximumFractionalValue (FRACTIONAL frames are stored / this).
        table: per frame ``(IPP, IOP, PixelSpacing, ReferencedSegmentNumber)`` (None when absent).
        frames: stored frames ``(n_frames, rows, cols)``: 0/1 for BINARY, stored values otherwise.
        dataset: the pydicom Dataset when pydicom read the file (frames placed by source reference).
    """

    segments: list[tuple[int, str]]
    seg_type: str
    max_fractional: float
    table: list[tuple[Any, Any, Any, Any]]
    frames: NDArray[Any]
    dataset: Any = None


def _first(values: Any, default: Any) -> Any:
    if values is None:
        return default
    return values[0] if isinstance(values, list) else values


def scan_seg(path: str) -> SegContent | None:
    """:class:`SegContent` of a native-encoded SEG whose frames all have a plane position, or None."""
    try:
        with FileReader(path) as r:
            pos, ts = dataset_start(r)
            explicit = ts != IMPLICIT_LE
            top, pos = walk_dataset(r, pos, None, explicit, 0, _SEQS, _LEAVES)
            tag, _, length, vpos = read_element(r, pos, explicit)
            if tag != PIXEL_DATA or length == UNDEFINED_LENGTH:
                return None  # encapsulated (compressed) frames: pydicom's decoders
            r.need(vpos + length)
            raw = r.buf[vpos : vpos + length]
    except (Decline, struct.error, OSError, ValueError):
        return None
    try:
        n_frames = int(_first(top.get(_N_FRAMES), "1") or 1)
        rows, cols, bits = int(top[_ROWS]), int(top[_COLS]), int(top[_BITS])
    except (KeyError, TypeError, ValueError):
        return None
    frames = _frames(raw, n_frames, rows, cols, bits, bool(top.get(_SIGNED, 0)))
    table = frame_table(top, n_frames)
    if frames is None or any(row[0] is None for row in table):
        return None
    segments = []
    for item in top.get(_SEGMENTS, []):
        number = item.get(_SEGMENT_NUMBER)
        if number is None or number == 0:
            continue
        segments.append((int(number), str(_first(item.get(_SEGMENT_LABEL), "")) or f"segment_{number}"))
    return SegContent(
        segments=sorted(segments),
        seg_type=str(_first(top.get(_SEG_TYPE), "BINARY") or "BINARY").upper(),
        max_fractional=float(top.get(_MAX_FRACTIONAL) or 255),
        table=table,
        frames=frames,
    )


def _frames(raw: bytes | bytearray, n: int, rows: int, cols: int, bits: int, signed: bool) -> NDArray[Any] | None:
    """Unpack native pixel data (bit-packed across frame boundaries when ``bits`` is 1), or None."""
    count = n * rows * cols
    if bits == 1:
        if len(raw) * 8 < count:
            return None
        packed = np.frombuffer(raw, dtype=np.uint8, count=(count + 7) // 8)
        return np.unpackbits(packed, bitorder="little", count=count).reshape(n, rows, cols)
    if bits not in (8, 16) or len(raw) < count * bits // 8:
        return None
    dtype = np.dtype(f"<{'i' if signed else 'u'}{bits // 8}")
    return np.frombuffer(raw, dtype=dtype, count=count).reshape(n, rows, cols).copy()
