"""DICOM SEG → uint8 label volume on the grid of the referenced image stack.

Each SEG frame is placed by *physical position*: its PlanePositionSequence IPP is mapped into the
image's index space (``Geometry.lps_to_index``); the nearest slice is used when it lies within half
a slice, and in-plane offsets must be whole pixels (cropped SEG frames are supported). Frames
without a position fall back to their referenced source SOPInstanceUID (DerivationImageSequence).
So a SEG whose frames are stored in any order, or that covers only some slices, is aligned.

Label values: the non-background segments in segment-number order become 1..n, named from
SegmentLabel. BINARY frames use value > 0, FRACTIONAL frames value / MaximumFractionalValue >= 0.5,
LABELMAP frames carry the segment number as pixel value. Where segments overlap, the higher
segment number wins (a single label map cannot hold overlaps).
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from medseg.geometry import Geometry
from medseg.io.dicom.frame import Frame
from medseg.io.dicom.frame_groups import dataset_frame_table, scan_frame_groups
from medseg.io.dicom.seg_scan import SegContent, scan_seg
from medseg.io.reasons import IngestError, Reason

if TYPE_CHECKING:  # pydicom is imported on first use (fallback paths only)
    from pydicom.dataset import Dataset

FRACTIONAL_THRESHOLD = 0.5
INPLANE_TOL = 0.1  # pixels: SEG frame origin must fall on an image pixel centre
SLICE_TOL = 0.5  # slices: nearest image slice within half a slice


def _source_ref(seg: Dataset, f: int) -> tuple[str, int] | None:
    per_frame = seg.get("PerFrameFunctionalGroupsSequence")
    if per_frame is None or f >= len(per_frame):
        return None
    for der in per_frame[f].get("DerivationImageSequence", []) or []:
        for src in der.get("SourceImageSequence", []) or []:
            if "ReferencedSOPInstanceUID" in src:
                frame_numbers = src.get("ReferencedFrameNumber")
                first = int(frame_numbers[0] if isinstance(frame_numbers, list | tuple) else frame_numbers or 1)
                return str(src.ReferencedSOPInstanceUID), first - 1
    return None


def read_seg(path: str) -> tuple[Dataset, NDArray[Any]]:
    """Read a DICOM SEG with pydicom: the dataset and its stored frames ``(n_frames, rows, cols)``.

    BINARY frames are unpacked to 0/1, FRACTIONAL frames are the stored 8-bit values, LABELMAP
    frames the stored segment numbers (pydicom's decoders; highdicom is not needed to read).

    Raises:
        IngestError: ``seg_error`` when the file or its pixel data cannot be read.
    """
    import pydicom

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(path)
            frames = np.asarray(ds.pixel_array)
    except Exception as exc:  # noqa: BLE001
        raise IngestError(Reason.SEG_ERROR, f"{path}: DICOM SEG cannot be read ({type(exc).__name__}: {exc})") from exc
    n_frames = int(ds.get("NumberOfFrames", 1) or 1)
    if frames.ndim == 2:
        frames = frames[None]
    if frames.ndim != 3 or frames.shape[0] != n_frames:
        raise IngestError(
            Reason.SEG_ERROR, f"{path}: SEG pixel data has shape {frames.shape}, expected {n_frames} frames"
        )
    return ds, frames


def seg_segments(seg: Dataset) -> list[tuple[int, str]]:
    """Non-background ``(segment number, label)`` pairs in segment-number order."""
    out = []
    for item in seg.get("SegmentSequence", []) or []:
        try:
            n = int(item.SegmentNumber)
        except (AttributeError, TypeError, ValueError):
            continue
        if n == 0:
            continue
        out.append((n, str(item.get("SegmentLabel", "") or f"segment_{n}")))
    return sorted(out)


def load_seg(path: str) -> SegContent:
    """What rasterising the SEG at ``path`` needs: :func:`scan_seg`, else pydicom (:func:`read_seg`).

    Raises:
        IngestError: ``seg_error`` when the file or its pixel data cannot be read.
    """
    content = scan_seg(path)
    if content is not None:
        return content
    ds, frames = read_seg(path)
    n_frames = frames.shape[0]
    return SegContent(
        segments=seg_segments(ds),
        seg_type=str(ds.get("SegmentationType", "BINARY") or "BINARY").upper(),
        max_fractional=float(ds.get("MaximumFractionalValue", 255) or 255),
        table=scan_frame_groups(path, n_frames) or dataset_frame_table(ds, n_frames),
        frames=frames,
        dataset=ds,
    )


def seg_to_label(path: str, geometry: Geometry, frames: list[Frame]) -> tuple[NDArray[np.uint8], dict[int, str]]:
    """Rasterise the SEG at ``path`` onto the image grid of ``frames`` (sorted stack) / ``geometry``.

    Returns:
        ``(label, names)``: uint8 ``(z, y, x)`` volume with values 0..n and ``{value: SegmentLabel}``.

    Raises:
        IngestError: ``seg_error`` (unreadable) or ``seg_mismatch`` (frames off the image grid).
    """
    seg = load_seg(path)
    shape = (len(frames), frames[0].rows, frames[0].cols)
    value_of = {n: v + 1 for v, (n, _) in enumerate(seg.segments)}
    names = {v + 1: label for v, (_, label) in enumerate(seg.segments)}
    if len(seg.segments) > 255:
        raise IngestError(Reason.SEG_MISMATCH, f"{path}: {len(seg.segments)} segments do not fit a uint8 label map")
    image_iop = np.asarray(frames[0].iop)
    checked: set[tuple[Any, Any]] = set()  # (IOP, spacing) pairs already compared with the image
    for f, (_, iop, spacing, _) in enumerate(seg.table):
        key = (tuple(iop) if iop is not None else None, tuple(spacing) if spacing is not None else None)
        if key not in checked:
            _check_plane(path, f, iop, spacing, image_iop, geometry)
            checked.add(key)
    where = _locate_all(seg, path, geometry, {(fr.sop_uid, fr.frame): z for z, fr in enumerate(frames)}, shape)
    label = np.zeros(shape, dtype=np.uint8)
    if seg.seg_type == "LABELMAP":
        for f, (z, j0, i0) in enumerate(where):
            _paste(label, z, j0, i0, seg.frames[f], value_of, 0, path)
        return label, names
    numbers = []
    for f, row in enumerate(seg.table):
        number = row[3]
        if number is None or int(number) not in value_of:
            raise IngestError(Reason.SEG_MISMATCH, f"{path}: frame {f + 1} has no valid ReferencedSegmentNumber")
        numbers.append(int(number))
    if seg.seg_type == "FRACTIONAL":
        masks = seg.frames >= FRACTIONAL_THRESHOLD * seg.max_fractional
    else:
        masks = seg.frames > 0
    for f in sorted(range(len(numbers)), key=lambda f: numbers[f]):  # the higher segment number wins
        z, j0, i0 = where[f]
        _paste(label, z, j0, i0, masks[f], value_of, numbers[f], path)
    return label, names


def _locate_all(
    seg: SegContent,
    path: str,
    geometry: Geometry,
    sop_index: dict[tuple[str, int], int],
    shape: tuple[int, int, int],
) -> list[tuple[int, int, int]]:
    """``(slice, row, column)`` of every frame's first pixel on the image grid (see :func:`_locate`)."""
    ipps = [row[0] for row in seg.table]
    if any(ipp is None or len(ipp) != 3 for ipp in ipps):
        return [_locate(seg.dataset, f, ipp, path, geometry, sop_index, shape) for f, ipp in enumerate(ipps)]
    kji = geometry.lps_to_index(np.asarray(ipps, dtype=np.float64))
    nearest = np.round(kji)
    off = np.abs(kji - nearest)
    outside = (nearest[:, 0] < 0) | (nearest[:, 0] >= shape[0])
    bad = (off[:, 0] > SLICE_TOL) | outside | np.any(off[:, 1:] > INPLANE_TOL, axis=1)
    if bad.any():
        f = int(np.argmax(bad))
        _locate(seg.dataset, f, ipps[f], path, geometry, sop_index, shape)  # raises the frame's error
    return [(int(z), int(j), int(i)) for z, j, i in nearest]


def _check_plane(path: str, f: int, iop: Any, spacing: Any, image_iop: NDArray[np.float64], geometry: Geometry) -> None:
    if iop is not None and float(np.max(np.abs(np.asarray(iop, dtype=float) - image_iop))) > 1e-3:
        raise IngestError(
            Reason.SEG_MISMATCH,
            f"{path}: frame {f + 1} orientation {list(iop)} differs from the referenced image {image_iop.tolist()}",
        )
    if spacing is not None and not np.allclose(np.asarray(spacing, dtype=float), geometry.spacing[1:], rtol=1e-3):
        raise IngestError(
            Reason.SEG_MISMATCH,
            f"{path}: pixel spacing {list(spacing)} differs from the referenced image {list(geometry.spacing[1:])}",
        )


def _locate(
    seg: Dataset | None,
    f: int,
    ipp: Any,
    path: str,
    geometry: Geometry,
    sop_index: dict[tuple[str, int], int],
    shape: tuple[int, int, int],
) -> tuple[int, int, int]:
    if ipp is not None:
        k, j, i = geometry.lps_to_index(np.asarray(ipp, dtype=float))
        z, j0, i0 = int(round(k)), int(round(j)), int(round(i))
        if abs(k - z) > SLICE_TOL or not 0 <= z < shape[0]:
            raise IngestError(
                Reason.SEG_MISMATCH,
                f"{path}: frame {f + 1} at {list(ipp)} lies {k:.2f} slices into "
                f"the image stack of {shape[0]} slices (outside it)",
            )
        if abs(j - j0) > INPLANE_TOL or abs(i - i0) > INPLANE_TOL:
            raise IngestError(
                Reason.SEG_MISMATCH,
                f"{path}: frame {f + 1} origin falls between image pixels "
                f"(row {j:.2f}, column {i:.2f}); resampled SEGs are not supported",
            )
        return z, j0, i0
    ref = _source_ref(seg, f) if seg is not None else None
    if ref is not None and ref in sop_index:
        return sop_index[ref], 0, 0
    raise IngestError(
        Reason.SEG_MISMATCH,
        f"{path}: frame {f + 1} has neither a plane position nor a source image reference found in the image stack",
    )


def _paste(
    label: NDArray[np.uint8],
    z: int,
    j0: int,
    i0: int,
    data: NDArray[Any],
    value_of: dict[int, int],
    number: int,
    path: str,
) -> None:
    rows, cols = data.shape
    j1, i1 = min(j0 + rows, label.shape[1]), min(i0 + cols, label.shape[2])
    ja, ia = max(j0, 0), max(i0, 0)
    inside = data[ja - j0 : j1 - j0, ia - i0 : i1 - i0]
    total = int(np.count_nonzero(data))
    if int(np.count_nonzero(inside)) != total:
        raise IngestError(Reason.SEG_MISMATCH, f"{path}: segment pixels fall outside the referenced image grid")
    target = label[z, ja:j1, ia:i1]
    if number == 0:  # LABELMAP: pixel values are segment numbers
        for seg_number, value in value_of.items():
            target[inside == seg_number] = value
    else:
        target[inside.astype(bool)] = value_of[number]
