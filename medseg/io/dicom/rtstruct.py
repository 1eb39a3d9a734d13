"""DICOM RTSTRUCT → uint8 label volume on the grid of the referenced image stack.

Contours (``ROIContourSequence`` → ``ContourSequence``, ``CLOSED_PLANAR`` only; POINT and OPEN
contours are markers, not regions) are placed by *physical position*: their LPS points are mapped
into the image's index space with :meth:`Geometry.lps_to_index`. A contour must be parallel to the
slices (index ``k`` constant within :data:`PLANE_TOL`) and lie within half a slice of one; it is
then filled on that slice with :func:`medseg.io.dicom.polygon.fill_polygon` (pixel centres inside or
on the contour). Contours of one ROI on the same slice are combined with XOR, so an inner contour
is a hole (the usual RT convention); a hole (a contour inside an odd number of the ROI's other
contours on that slice) removes only the pixel centres strictly inside it, because a traced hole
contour runs through pixels of the surrounding region.

A contour whose ``ContourImageSequence`` names only SOP instances that are *not* in this stack
belongs to another stack of the series (or to slices not exported) and is skipped; any other
contour that does not fall on the grid makes the whole RTSTRUCT a ``rtstruct_mismatch``.

Label values: ROIs with at least one placed contour, in ROINumber order, become 1..n named by
``StructureSetROISequence`` ROIName (ROIs sharing a name share a value). Where ROIs overlap, the
higher ROINumber wins (a label map cannot hold overlaps).
"""

from __future__ import annotations

import warnings
from collections import defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from medseg.geometry import Geometry
from medseg.io.dicom.frame import Frame
from medseg.io.dicom.polygon import fill_polygon, point_in_polygon
from medseg.io.reasons import IngestError, Reason

if TYPE_CHECKING:  # pydicom is imported on first use
    from pydicom.dataset import Dataset

RTSTRUCT_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.481.3"
SLICE_TOL = 0.5  # slices: a contour belongs to the nearest slice within half a slice
PLANE_TOL = 0.1  # slices: spread of k over one contour's points (contour parallel to the slices)


@dataclass(frozen=True)
class Contour:
    """One closed planar contour: ``(n, 3)`` LPS points (mm) and the SOP instances it names."""

    points: NDArray[np.float64]
    ref_sop_uids: tuple[str, ...] = ()


@dataclass
class Roi:
    number: int
    name: str
    contours: list[Contour] = field(default_factory=list)


@dataclass
class Raster:
    """Result of :func:`rasterise_rois`: the label map and what happened to each contour."""

    label: NDArray[np.uint8]
    names: dict[int, str]
    placed: int = 0
    skipped_other_stack: int = 0
    off_grid: list[str] = field(default_factory=list)


def read_rtstruct(path: str) -> Dataset:
    """Read an RTSTRUCT file completely.

    Raises:
        IngestError: ``rtstruct_error`` when unreadable or not an RT Structure Set.
    """
    import pydicom

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(path)
    except Exception as exc:  # noqa: BLE001
        raise IngestError(
            Reason.RTSTRUCT_ERROR, f"{path}: RTSTRUCT cannot be read ({type(exc).__name__}: {exc})"
        ) from exc
    if str(ds.get("SOPClassUID", "")) != RTSTRUCT_SOP_CLASS and str(ds.get("Modality", "")) != "RTSTRUCT":
        raise IngestError(
            Reason.RTSTRUCT_ERROR, f"{path}: not an RT Structure Set (SOPClassUID {ds.get('SOPClassUID')})"
        )
    return ds


def rtstruct_rois(ds: Dataset, path: str = "") -> list[Roi]:
    """The ROIs of an RTSTRUCT with their CLOSED_PLANAR contours, sorted by ROINumber.

    Raises:
        IngestError: ``rtstruct_error`` when ContourData is malformed.
    """
    names: dict[int, str] = {}
    for item in ds.get("StructureSetROISequence", []) or []:
        try:
            number = int(item.ROINumber)
        except (AttributeError, TypeError, ValueError):
            continue
        names[number] = str(item.get("ROIName", "") or f"roi_{number}").strip() or f"roi_{number}"
    rois: dict[int, Roi] = {}
    for rc in ds.get("ROIContourSequence", []) or []:
        try:
            number = int(rc.ReferencedROINumber)
        except (AttributeError, TypeError, ValueError):
            continue
        roi = rois.setdefault(number, Roi(number, names.get(number, f"roi_{number}")))
        for c in rc.get("ContourSequence", []) or []:
            if str(c.get("ContourGeometricType", "")).upper() != "CLOSED_PLANAR":
                continue
            try:
                pts = np.asarray([float(v) for v in c.ContourData], dtype=np.float64).reshape(-1, 3)
            except (AttributeError, TypeError, ValueError) as exc:
                raise IngestError(
                    Reason.RTSTRUCT_ERROR,
                    f"{path}: ROI {number} ({roi.name!r}) has malformed ContourData ({exc}); re-export the RTSTRUCT",
                ) from exc
            refs = tuple(
                str(ci.ReferencedSOPInstanceUID)
                for ci in c.get("ContourImageSequence", []) or []
                if "ReferencedSOPInstanceUID" in ci
            )
            if len(pts) >= 3:
                roi.contours.append(Contour(pts, refs))
    return [rois[n] for n in sorted(rois)]


def rasterise_rois(
    rois: list[Roi],
    geometry: Geometry,
    shape: tuple[int, int, int],
    sop_uids: set[str] | None = None,
    where: str = "",
) -> Raster:
    """Fill ``rois`` on the ``(z, y, x)`` grid of ``geometry``/``shape`` (see module doc).

    Args:
        rois: From :func:`rtstruct_rois`.
        geometry: Image geometry.
        shape: ``(slices, rows, columns)``.
        sop_uids: SOPInstanceUIDs of the image stack; a contour that names only other instances
            is skipped instead of being reported off-grid. None = no such check.
        where: File name for messages.

    Returns:
        A :class:`Raster`; ``off_grid`` lists a message per contour that did not fit the grid.
    """
    label = np.zeros(shape, dtype=np.uint8)
    raster = Raster(label=label, names={})
    value_of: dict[str, int] = {}
    for roi in rois:
        placed: dict[int, list[NDArray[np.float64]]] = defaultdict(list)  # slice -> (n, 2) (j, i) polygons
        for ci, contour in enumerate(roi.contours):
            idx = geometry.lps_to_index(contour.points)  # (n, 3) = (k, j, i)
            k = idx[:, 0]
            kz = round(float(np.mean(k)))
            foreign = sop_uids is not None and bool(contour.ref_sop_uids) and not (set(contour.ref_sop_uids) & sop_uids)
            problem = ""
            if float(k.max() - k.min()) > PLANE_TOL:
                problem = f"is not parallel to the image slices (spans {float(k.max() - k.min()):.2f} slices)"
            elif abs(float(np.mean(k)) - kz) > SLICE_TOL or not 0 <= kz < shape[0]:
                problem = f"lies at slice index {float(np.mean(k)):.2f}, outside the {shape[0]} image slices"
            if problem:
                if foreign:
                    raster.skipped_other_stack += 1
                else:
                    raster.off_grid.append(f"{where}: ROI {roi.number} ({roi.name!r}) contour {ci + 1} {problem}")
                continue
            placed[kz].append(idx[:, 1:])
            raster.placed += 1
        if not placed:
            continue
        if roi.name not in value_of:
            value_of[roi.name] = len(value_of) + 1
            if value_of[roi.name] > 255:
                raise IngestError(Reason.RTSTRUCT_MISMATCH, f"{where}: more than 255 ROIs do not fit a uint8 label map")
        for kz, polygons in placed.items():
            label[kz][_fill_slice(polygons, (shape[1], shape[2]))] = value_of[roi.name]
    raster.names = {v: n for n, v in value_of.items()}
    return raster


def _fill_slice(polygons: list[NDArray[np.float64]], shape: tuple[int, int]) -> NDArray[np.bool_]:
    """XOR of the polygons of one ROI on one slice; holes (odd nesting depth) exclude their boundary."""
    mask = np.zeros(shape, dtype=bool)
    for n, poly in enumerate(polygons):
        depth = sum(1 for m, other in enumerate(polygons) if m != n and point_in_polygon(poly[0], other))
        mask ^= fill_polygon(poly, shape, boundary=depth % 2 == 0)
    return mask


def rtstruct_to_label(path: str, geometry: Geometry, frames: list[Frame]) -> tuple[NDArray[np.uint8], dict[int, str]]:
    """Rasterise the RTSTRUCT at ``path`` onto the image stack ``frames`` (sorted) / ``geometry``.

    Returns:
        ``(label, names)``: uint8 ``(z, y, x)`` volume with values 0..n and ``{value: ROIName}``.

    Raises:
        IngestError: ``rtstruct_error`` (unreadable) or ``rtstruct_mismatch`` (a contour off the
            image grid, or no contour on it at all).
    """
    ds = read_rtstruct(path)
    rois = rtstruct_rois(ds, path)
    shape = (len(frames), frames[0].rows, frames[0].cols)
    raster = rasterise_rois(rois, geometry, shape, {f.sop_uid for f in frames}, where=path)
    if raster.off_grid:
        more = f" (and {len(raster.off_grid) - 1} more)" if len(raster.off_grid) > 1 else ""
        raise IngestError(
            Reason.RTSTRUCT_MISMATCH,
            f"{raster.off_grid[0]}{more}; the RTSTRUCT does not fit the referenced image grid",
        )
    if raster.placed == 0:
        n = sum(len(r.contours) for r in rois)
        raise IngestError(
            Reason.RTSTRUCT_MISMATCH,
            f"{path}: none of its {n} closed planar contour(s) lies on the referenced image stack "
            f"({raster.skipped_other_stack} name other instances)",
        )
    return raster.label, raster.names


def rtstruct_references(ds: Dataset) -> tuple[list[str], list[str], list[str]]:
    """``(series UIDs, SOPInstanceUIDs, FrameOfReferenceUIDs)`` an RTSTRUCT refers to (header only)."""
    series: set[str] = set()
    sops: set[str] = set()
    fors: set[str] = set()
    for rfr in ds.get("ReferencedFrameOfReferenceSequence", []) or []:
        if "FrameOfReferenceUID" in rfr:
            fors.add(str(rfr.FrameOfReferenceUID))
        for study in rfr.get("RTReferencedStudySequence", []) or []:
            for se in study.get("RTReferencedSeriesSequence", []) or []:
                if "SeriesInstanceUID" in se:
                    series.add(str(se.SeriesInstanceUID))
                for ci in se.get("ContourImageSequence", []) or []:
                    if "ReferencedSOPInstanceUID" in ci:
                        sops.add(str(ci.ReferencedSOPInstanceUID))
    for item in ds.get("StructureSetROISequence", []) or []:
        if "ReferencedFrameOfReferenceUID" in item:
            fors.add(str(item.ReferencedFrameOfReferenceUID))
    for rc in ds.get("ROIContourSequence", []) or []:
        for c in rc.get("ContourSequence", []) or []:
            for ci in c.get("ContourImageSequence", []) or []:
                if "ReferencedSOPInstanceUID" in ci:
                    sops.add(str(ci.ReferencedSOPInstanceUID))
    return sorted(series), sorted(sops), sorted(fors)
