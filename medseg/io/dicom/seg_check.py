"""A written DICOM SEG read back as a PACS would, and checked against its source series.

:func:`check_seg` reads the SEG with pydicom (headers, frame by frame) and with highdicom
(``segread``: segment descriptions and the decoded volume), reads the source series headers with
pydicom, and returns one sentence per problem, naming the field and the frame (empty: consistent).
What it checks:

* identity: SOP class Segmentation Storage and Modality SEG; StudyInstanceUID,
  FrameOfReferenceUID and PatientID equal the source's; Rows x Columns equal the source's;
* references: ReferencedSeriesSequence names the source series, and every instance it lists and
  every frame's DerivationImageSequence/SourceImageSequence reference is an instance of the source
  series, with its SOP class (multi-frame sources: a frame it has), listed in ReferencedSeriesSequence;
* every frame: its SegmentIdentificationSequence names a segment of the SEG; its
  PlanePositionSequence ImagePositionPatient is the position of the source frame it references
  (within :data:`POSITION_TOL_MM`); its PlaneOrientationSequence and PixelMeasuresSequence
  PixelSpacing equal that source frame's;
* with :class:`ExpectedSeg` (what the SEG was written from): segments 1..n are the model's
  foreground classes in ascending class order (SegmentLabel, AUTOMATIC, algorithm name and
  version, property category and type codes of :mod:`medseg.io.dicom.seg_codes`), and the volume
  highdicom decodes (``get_volume``), placed through its own affine onto the source volume grid,
  equals the label map voxel for voxel (slices the SEG omits as empty must be empty).

The prediction writer runs it on every SEG before the file takes its place
(:func:`medseg.io.dicom.seg_writer.write_prediction_seg`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import highdicom as hd
import numpy as np
import pydicom
from numpy.typing import NDArray
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue

from medseg.geometry import Geometry
from medseg.io.dicom.frame_groups import dataset_frame_table
from medseg.io.dicom.seg_codes import algorithm_name, segment_codes, segment_label

SEGMENTATION_STORAGE = "1.2.840.10008.5.1.4.1.1.66.4"
#: a frame's ImagePositionPatient may differ from its source frame's by this much (mm).
POSITION_TOL_MM = 1e-3
#: tolerance on direction cosines (ImageOrientationPatient).
ORIENTATION_TOL = 1e-4
#: tolerance on PixelSpacing (mm).
SPACING_TOL_MM = 1e-4
#: the decoded volume's voxel grid must fall on the source volume's voxels within this (voxels).
GRID_TOL = 1e-3
#: problems named one by one in a :class:`SegCheckError` message (and slices in a pixel report).
SHOWN = 10

SourceInput = Path | str | Dataset


class SegCheckError(RuntimeError):
    """A written SEG does not match its source series or the label map it was written from."""

    def __init__(self, path: Path, problems: Sequence[str]) -> None:
        self.path = Path(path)
        self.problems = list(problems)
        shown = "; ".join(self.problems[:SHOWN])
        more = f"; and {len(self.problems) - SHOWN} more" if len(self.problems) > SHOWN else ""
        super().__init__(
            f"DICOM SEG {path} was not written: read back, it does not match its source series or the "
            f"prediction ({len(self.problems)} problem(s)): {shown}{more}. This is a medseg writer defect."
        )


@dataclass(frozen=True)
class ExpectedSeg:
    """What a SEG was written from, so :func:`check_seg` can compare segments and pixels too.

    Attributes:
        label_zyx: ``(z, y, x)`` class values on the source volume grid (the ingested volume).
        geometry: that volume's geometry (:mod:`medseg.geometry`).
        label_names: ``{class value: name}``; class 0 (background) is ignored.
        family: model family (AlgorithmName ``medseg-<family>``).
        version: model version (AlgorithmVersion).
    """

    label_zyx: NDArray[Any]
    geometry: Geometry
    label_names: Mapping[int, str]
    family: str
    version: str

    @property
    def classes(self) -> list[int]:
        """Foreground class values in ascending order (segment ``i`` is ``classes[i - 1]``)."""
        return sorted(int(v) for v in self.label_names if int(v) != 0)


@dataclass(frozen=True)
class _SourceFrame:
    """Where one source frame lies: ImagePositionPatient, ImageOrientationPatient, PixelSpacing (None: absent)."""

    position: NDArray[np.float64] | None
    orientation: NDArray[np.float64] | None
    spacing: NDArray[np.float64] | None


@dataclass(frozen=True)
class _Source:
    """The source series as the checker needs it; frames keyed by (SOPInstanceUID, 1-based frame number)."""

    series_uid: str
    study_uid: str
    frame_of_reference_uid: str
    patient_id: str
    rows: int
    columns: int
    sop_classes: dict[str, str]
    n_frames: dict[str, int]
    frames: dict[tuple[str, int], _SourceFrame]

    def slice_instances(self, geometry: Geometry) -> dict[int, str]:
        """Volume slice index -> the source instance lying on it (for messages)."""
        out = {}
        for (uid, f), frame in self.frames.items():
            if frame.position is not None and frame.position.size == 3:
                z = int(np.rint(geometry.lps_to_index(frame.position)[0]))
                out[z] = uid if self.n_frames[uid] == 1 else f"{uid} frame {f}"
        return out


def _floats(value: Any) -> NDArray[np.float64] | None:
    if value is None:
        return None
    values = value if isinstance(value, list | tuple | MultiValue) else [value]
    return np.asarray([float(v) for v in values], dtype=np.float64)


def _deviation(got: NDArray[np.float64] | None, want: NDArray[np.float64]) -> float:
    """Largest absolute difference (inf when missing or of another length)."""
    if got is None or got.shape != want.shape:
        return float("inf")
    return float(np.max(np.abs(got - want)))


def _show(values: NDArray[np.float64] | None) -> str:
    return "missing" if values is None else str(np.round(values, 4).tolist())


def _read_source(source: Sequence[SourceInput]) -> _Source:
    """Headers of the source instances (pydicom, no pixels), checked to be one series."""
    datasets = [s if isinstance(s, Dataset) else pydicom.dcmread(s, stop_before_pixels=True) for s in source]
    if not datasets:
        raise ValueError("check_seg needs the source series' instances; none were given")
    for key in ("SeriesInstanceUID", "StudyInstanceUID", "FrameOfReferenceUID"):
        values = {str(ds.get(key, "")) for ds in datasets}
        if len(values) != 1:
            raise ValueError(f"the source instances given to check_seg are not one series: {key} is {sorted(values)}")
    frames: dict[tuple[str, int], _SourceFrame] = {}
    sop_classes: dict[str, str] = {}
    n_frames: dict[str, int] = {}
    for ds in datasets:
        uid = str(ds.SOPInstanceUID)
        sop_classes[uid] = str(ds.SOPClassUID)
        if "PerFrameFunctionalGroupsSequence" in ds:
            table = dataset_frame_table(ds, int(ds.get("NumberOfFrames", 1) or 1))
        else:
            table = [(ds.get("ImagePositionPatient"), ds.get("ImageOrientationPatient"), ds.get("PixelSpacing"), None)]
        n_frames[uid] = len(table)
        for f, (ipp, iop, spacing, _) in enumerate(table, start=1):
            frames[(uid, f)] = _SourceFrame(_floats(ipp), _floats(iop), _floats(spacing))
    first = datasets[0]
    return _Source(
        series_uid=str(first.SeriesInstanceUID),
        study_uid=str(first.get("StudyInstanceUID", "")),
        frame_of_reference_uid=str(first.get("FrameOfReferenceUID", "")),
        patient_id=str(first.get("PatientID", "")),
        rows=int(first.Rows),
        columns=int(first.Columns),
        sop_classes=sop_classes,
        n_frames=n_frames,
        frames=frames,
    )


def _identity_problems(seg: Dataset, src: _Source) -> list[str]:
    out = []
    sop_class = str(seg.get("SOPClassUID", ""))
    if sop_class != SEGMENTATION_STORAGE:
        out.append(f"SOPClassUID is {sop_class!r}, not Segmentation Storage ({SEGMENTATION_STORAGE})")
    if seg.get("Modality") != "SEG":
        out.append(f"Modality is {seg.get('Modality')!r}, not 'SEG'")
    for key, want in (
        ("StudyInstanceUID", src.study_uid),
        ("FrameOfReferenceUID", src.frame_of_reference_uid),
        ("PatientID", src.patient_id),
    ):
        got = str(seg.get(key, ""))
        if got != want:
            out.append(f"{key} is {got!r}, the source series' is {want!r}")
    size = (int(seg.get("Rows", 0)), int(seg.get("Columns", 0)))
    if size != (src.rows, src.columns):
        out.append(f"Rows x Columns is {size[0]}x{size[1]}, the source's {src.rows}x{src.columns}")
    return out


def _instance_problems(where: str, item: Dataset, src: _Source) -> list[str]:
    """A reference item (ReferencedSOPInstanceUID + ReferencedSOPClassUID) must name a source instance."""
    uid = str(item.get("ReferencedSOPInstanceUID", ""))
    if uid not in src.sop_classes:
        return [f"{where}: ReferencedSOPInstanceUID {uid!r} is not an instance of the source series {src.series_uid}"]
    sop_class = str(item.get("ReferencedSOPClassUID", ""))
    if sop_class != src.sop_classes[uid]:
        return [f"{where}: ReferencedSOPClassUID {sop_class!r} of instance {uid} is not its SOP class "
                f"{src.sop_classes[uid]!r}"]
    return []


def _series_reference_problems(seg: Dataset, src: _Source) -> tuple[list[str], set[str]]:
    """Problems of ReferencedSeriesSequence, and the instance UIDs it lists."""
    series = seg.get("ReferencedSeriesSequence") or []
    if not series:
        return ["ReferencedSeriesSequence is missing or empty: the SEG names no source series"], set()
    out: list[str] = []
    listed: set[str] = set()
    for i, item in enumerate(series, start=1):
        uid = str(item.get("SeriesInstanceUID", ""))
        if uid != src.series_uid:
            out.append(f"ReferencedSeriesSequence item {i}: SeriesInstanceUID {uid!r} is not the source series "
                       f"{src.series_uid!r}")
        for j, inst in enumerate(item.get("ReferencedInstanceSequence") or [], start=1):
            out += _instance_problems(f"ReferencedSeriesSequence item {i} ReferencedInstanceSequence item {j}",
                                      inst, src)
            listed.add(str(inst.get("ReferencedSOPInstanceUID", "")))
    return out, listed


def _referenced_frames(
    where: str, item: Dataset, src: _Source, listed: set[str]
) -> tuple[list[str], list[tuple[str, int]]]:
    """Problems of one SEG frame's source references, and a name of each source frame it references."""
    refs = [s for der in item.get("DerivationImageSequence") or [] for s in der.get("SourceImageSequence") or []]
    if not refs:
        return [f"{where}: DerivationImageSequence/SourceImageSequence references no source image"], []
    out: list[str] = []
    keys: list[tuple[str, int]] = []
    for ref in refs:
        problems = _instance_problems(f"{where}: DerivationImageSequence/SourceImageSequence", ref, src)
        out += problems
        if problems:
            continue
        uid = str(ref.ReferencedSOPInstanceUID)
        if uid not in listed:
            out.append(f"{where}: source instance {uid} is not listed in ReferencedSeriesSequence")
        numbers = _floats(ref.get("ReferencedFrameNumber"))
        if numbers is None:
            if src.n_frames[uid] > 1:
                out.append(f"{where}: references multi-frame instance {uid} without a ReferencedFrameNumber")
                continue
            numbers = np.ones(1)
        for number in numbers.astype(int).tolist():
            if (uid, number) not in src.frames:
                out.append(f"{where}: ReferencedFrameNumber {number} is not a frame of source instance {uid}")
            else:
                keys.append((uid, number))
    return out, keys


def _plane_problems(where: str, plane: tuple[Any, Any, Any, Any], key: tuple[str, int], src: _Source) -> list[str]:
    """The frame's position, orientation and spacing against those of the source frame ``key`` (uid, number)."""
    uid, number = key
    frame = src.frames[key]
    name = f"source instance {uid}" + (f" frame {number}" if src.n_frames[uid] > 1 else "")
    ipp, iop, spacing = (_floats(v) for v in plane[:3])
    out = []
    if frame.position is not None and _deviation(ipp, frame.position) > POSITION_TOL_MM:
        distance = float(np.linalg.norm(ipp - frame.position)) if ipp is not None and ipp.shape == (3,) else None
        how_far = "differs" if distance is None else f"is {distance:.3f} mm"
        out.append(f"{where}: PlanePositionSequence ImagePositionPatient {_show(ipp)} {how_far} from "
                   f"{_show(frame.position)}, the position of the {name} it references")
    if frame.orientation is not None and _deviation(iop, frame.orientation) > ORIENTATION_TOL:
        out.append(f"{where}: PlaneOrientationSequence ImageOrientationPatient {_show(iop)} is not "
                   f"{_show(frame.orientation)}, the orientation of the {name} it references")
    if frame.spacing is not None and _deviation(spacing, frame.spacing) > SPACING_TOL_MM:
        out.append(f"{where}: PixelMeasuresSequence PixelSpacing {_show(spacing)} is not "
                   f"{_show(frame.spacing)}, the spacing of the {name} it references")
    return out


def _frame_problems(seg: Dataset, src: _Source, listed: set[str]) -> list[str]:
    n = int(seg.get("NumberOfFrames", 0) or 0)
    per_frame = seg.get("PerFrameFunctionalGroupsSequence") or []
    out = []
    if len(per_frame) != n:
        out.append(f"PerFrameFunctionalGroupsSequence has {len(per_frame)} items for NumberOfFrames {n}")
    segments = sorted(int(s.SegmentNumber) for s in seg.get("SegmentSequence") or [])
    table = dataset_frame_table(seg, len(per_frame))
    for f, (item, plane) in enumerate(zip(per_frame, table, strict=True), start=1):
        where = f"frame {f}"
        number = plane[3]
        if number is None or int(number) not in segments:
            out.append(f"{where}: SegmentIdentificationSequence ReferencedSegmentNumber {number} is not a segment "
                       f"of the SEG (SegmentSequence has {segments})")
        problems, keys = _referenced_frames(where, item, src, listed)
        out += problems
        for key in keys:
            out += _plane_problems(where, plane, key, src)
    return out


def _code(concept: Any) -> str:
    return f"({concept.value}, {concept.scheme_designator}, {concept.meaning!r})"


def _segment_problems(seg: hd.seg.Segmentation, expected: ExpectedSeg) -> list[str]:
    classes = expected.classes
    numbers = list(seg.segment_numbers)
    if numbers != list(range(1, len(classes) + 1)):
        return [f"SegmentSequence has segment numbers {numbers}; the model's foreground classes are {classes}, "
                f"so segments 1..{len(classes)} were expected"]
    out = []
    for number, value in enumerate(classes, start=1):
        name = str(expected.label_names[value])
        desc = seg.get_segment_description(number)
        where = f"segment {number} (class {value} {name!r})"
        if desc.segment_label != segment_label(name):
            out.append(f"{where}: SegmentLabel {desc.segment_label!r} is not {segment_label(name)!r}")
        if desc.get("SegmentAlgorithmType") != "AUTOMATIC":
            out.append(f"{where}: SegmentAlgorithmType {desc.get('SegmentAlgorithmType')!r} is not 'AUTOMATIC'")
        algorithm = desc.get("SegmentationAlgorithmIdentificationSequence") or []
        if not algorithm:
            out.append(f"{where}: SegmentationAlgorithmIdentificationSequence is missing")
        else:
            for key, want in (("AlgorithmName", algorithm_name(expected.family)),
                              ("AlgorithmVersion", expected.version[:64])):
                if str(algorithm[0].get(key, "")) != want:
                    out.append(f"{where}: {key} {str(algorithm[0].get(key, ''))!r} is not {want!r}")
        category, prop = segment_codes(name)
        for field, got, want in (
            ("SegmentedPropertyCategoryCodeSequence", desc.segmented_property_category, category),
            ("SegmentedPropertyTypeCodeSequence", desc.segmented_property_type, prop),
        ):
            if (got.value, got.scheme_designator) != (want.value, want.scheme_designator):
                out.append(f"{where}: {field} is {_code(got)}, not {_code(want)}")
    return out


def place_on_grid(array: NDArray[Any], affine: NDArray[np.float64], geometry: Geometry,
                  shape: tuple[int, ...]) -> NDArray[Any] | str:
    """``array`` (voxel -> LPS by ``affine``) placed on the grid of ``geometry``/``shape``, or why it cannot be.

    The two grids must differ only by a signed axis permutation and a whole-voxel shift (a SEG of
    our own source series does); voxels of the grid that ``array`` does not cover are 0.
    """
    m = np.linalg.inv(geometry.affine_lps()) @ np.asarray(affine, dtype=np.float64)  # array index -> our index
    rot, shift = m[:3, :3], m[:3, 3]
    perm = np.rint(rot)
    is_permutation = bool(np.all(np.abs(perm).sum(axis=0) == 1) and np.all(np.abs(perm).sum(axis=1) == 1))
    if (not is_permutation or np.max(np.abs(rot - perm)) > GRID_TOL
            or np.max(np.abs(shift - np.rint(shift))) > GRID_TOL):
        return (f"the decoded SEG volume's voxel grid does not fall on the source volume's voxels "
                f"(SEG index -> source index: {np.round(m[:3], 4).tolist()})")
    out_array = array
    starts, order = [0, 0, 0], [0, 0, 0]
    for b in range(3):  # axis b of the SEG array lies along our axis a
        a = int(np.flatnonzero(perm[:, b])[0])
        order[a] = b
        t = int(np.rint(shift[a]))
        if perm[a, b] < 0:
            out_array = np.flip(out_array, axis=b)
            starts[a] = t - (array.shape[b] - 1)
        else:
            starts[a] = t
    out_array = np.transpose(out_array, order)
    stops = [s + n for s, n in zip(starts, out_array.shape, strict=True)]
    if min(starts) < 0 or any(e > n for e, n in zip(stops, shape, strict=True)):
        return (f"the decoded SEG volume covers source voxels {list(zip(starts, stops, strict=True))} "
                f"[start, stop) per axis, outside the source volume of shape {tuple(shape)}")
    placed = np.zeros(shape, dtype=out_array.dtype)
    placed[starts[0]:stops[0], starts[1]:stops[1], starts[2]:stops[2]] = out_array
    return placed


def _pixel_problems(seg: hd.seg.Segmentation, expected: ExpectedSeg, src: _Source) -> list[str]:
    label = np.asarray(expected.label_zyx)
    classes = expected.classes
    lut = np.zeros(max(max(classes), int(label.max(initial=0))) + 1, dtype=np.int64)
    lut[classes] = np.arange(1, len(classes) + 1)  # class value -> segment number
    want = lut[label]
    try:
        volume = seg.get_volume(combine_segments=True)
    except Exception as exc:  # noqa: BLE001 - whatever stops highdicom decoding is a problem to report
        return [f"highdicom cannot decode the SEG as a volume (get_volume): {type(exc).__name__}: {exc}"]
    placed = place_on_grid(np.asarray(volume.array), np.asarray(volume.affine), expected.geometry, label.shape)
    if isinstance(placed, str):
        return [placed]
    differ = placed != want
    bad = np.flatnonzero(differ.any(axis=(1, 2)))
    if not bad.size:
        return []
    instances = src.slice_instances(expected.geometry)
    out = []
    for z in bad[:SHOWN].tolist():
        on = f" (source instance {instances[z]})" if z in instances else ""
        out.append(f"slice z={z}{on}: {int(differ[z].sum())} voxels of the decoded SEG differ from the written "
                   f"label map")
    if bad.size > SHOWN:
        out.append(f"{bad.size - SHOWN} more slices of the decoded SEG differ from the written label map")
    return out


def check_seg(seg_path: Path | str, source: Sequence[SourceInput], expected: ExpectedSeg | None = None) -> list[str]:
    """Problems of the SEG at ``seg_path`` against its source series (see the module docstring); [] = consistent.

    Args:
        seg_path: the DICOM SEG file.
        source: the source series' instances: file paths, or pydicom Datasets already read
            (headers suffice).
        expected: what the SEG was written from; without it, segments and pixels are not compared.

    Raises:
        ValueError: ``source`` is empty or not one series (a caller error, not a SEG problem).
    """
    src = _read_source(source)
    try:
        ds = pydicom.dcmread(seg_path, stop_before_pixels=True)
    except Exception as exc:  # noqa: BLE001 - an unreadable SEG is the first problem to report
        return [f"pydicom cannot read the SEG {seg_path}: {type(exc).__name__}: {exc}"]
    problems = _identity_problems(ds, src)
    reference_problems, listed = _series_reference_problems(ds, src)
    problems += reference_problems
    problems += _frame_problems(ds, src, listed)
    try:
        seg = hd.seg.segread(seg_path)
    except Exception as exc:  # noqa: BLE001 - what a PACS viewer's reader would choke on
        return [*problems, f"highdicom cannot read the SEG (segread): {type(exc).__name__}: {exc}"]
    if expected is not None:
        problems += _segment_problems(seg, expected)
        problems += _pixel_problems(seg, expected, src)
    return problems
