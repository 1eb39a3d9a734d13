"""DICOM SEG output (highdicom): a predicted label map as a BINARY Segmentation of its source series.

For a case ingested from DICOM, the catalog knows the SeriesInstanceUID, the SOPInstanceUIDs of
its stack and their files. :func:`find_dicom_source` reads those files' headers only
(``stop_before_pixels``) and matches every frame to its slice of the ``(z, y, x)`` volume through
ImagePositionPatient and the case geometry (so file order and oblique orientations do not matter).
:func:`build_prediction_seg` then writes one segment per foreground class of the model's plan
(label names from the bundle), each frame referencing its source instance, with the source's own
plane positions and orientation (highdicom copies them from the source images).

Layout (keys are the de-identified catalog keys, so folder names carry no PHI; the files
themselves hold the source's patient/study module, as PACS needs, so treat the folder as
confidential like the catalog)::

    predictions/<family>/<version>/dicom-seg/<study_key>/<series_key>/seg.dcm

The model that made the SEG is recorded in SeriesDescription (``medseg <family> <version>``),
ContentDescription, ContentCreatorName, SoftwareVersions (``"medseg-<medseg version> <family>/<version>"``)
and every segment's AlgorithmIdentificationSequence (name, family "Artificial Intelligence",
version). UIDs derive from (source series, family, version), so re-writing gives the same UIDs.

Every SEG is read back and checked against its source headers and the label map before it is
put in place (:mod:`medseg.io.dicom.seg_check`); one that fails is never left at its path.
"""

from __future__ import annotations

import copy
import json
import os
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import highdicom as hd
import numpy as np
import pydicom
from numpy.typing import NDArray
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.uid import generate_uid

import medseg
from medseg.geometry import Geometry
from medseg.io.catalog import Catalog
from medseg.io.dicom.seg_check import ExpectedSeg, SegCheckError, check_seg
from medseg.io.dicom.seg_codes import algorithm_name, segment_codes, segment_label

SEG_FILE = "seg.dcm"
SEG_DIR = "dicom-seg"
SEG_SERIES_NUMBER = 901
#: tolerance (voxels) when matching a frame's ImagePositionPatient to a slice of the volume.
POSITION_TOLERANCE_VOXELS = 0.1
#: Type 2 attributes (present, possibly empty) of the Patient, General Study and Image Plane modules
#: that highdicom reads from the first source image; real archives (anonymised or shrunk) drop them.
TYPE2_SOURCE_ATTRIBUTES = (
    "PatientID", "PatientName", "PatientBirthDate", "PatientSex", "AccessionNumber", "StudyID", "StudyDate",
    "StudyTime",
)


class DicomSourceUnavailable(LookupError):
    """The case has no usable DICOM source (NIfTI import, files gone, geometry mismatch): the SEG is skipped."""


@dataclass(frozen=True)
class DicomSource:
    """Where a case came from, as needed to write its SEG.

    Attributes:
        case_id: medseg case id (also the catalog's series key).
        study_key: de-identified study key (folder name).
        series_uid: SeriesInstanceUID of the source series.
        datasets: source headers, one per instance (no pixel data).
        frame_slices: for each instance (in ``datasets`` order), the volume slice index ``z`` of each
            of its frames, in frame order (single-frame instances: one entry).
        slice_spacing_mm: distance between the volume's slices (the SEG's SliceThickness where the
            source has none).
    """

    case_id: str
    study_key: str
    series_uid: str
    datasets: tuple[Dataset, ...]
    frame_slices: tuple[tuple[int, ...], ...]
    slice_spacing_mm: float

    @property
    def sop_uids(self) -> list[str]:
        return [str(ds.SOPInstanceUID) for ds in self.datasets]


def seg_path(prediction_dir: Path, study_key: str, series_key: str) -> Path:
    """``<prediction_dir>/dicom-seg/<study_key>/<series_key>/seg.dcm``."""
    return Path(prediction_dir) / SEG_DIR / study_key / series_key / SEG_FILE


def _catalog_rows(catalog_path: Path, case_id: str) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """The image series row of ``case_id`` and ``(path, sop_uid)`` of its series' files (read-only)."""
    if not Path(catalog_path).is_file():
        raise DicomSourceUnavailable(f"catalog {catalog_path} not found (run `medseg ingest` first)")
    try:
        return Catalog(Path(catalog_path), create=False).image_series_files(case_id)
    except KeyError:
        raise DicomSourceUnavailable(f"case {case_id} is not in the catalog {catalog_path}") from None


def _frame_positions(ds: Dataset) -> list[NDArray[np.float64]]:
    """ImagePositionPatient of each frame of an instance (single- or multi-frame)."""
    if "PerFrameFunctionalGroupsSequence" in ds:
        out = []
        for item in ds.PerFrameFunctionalGroupsSequence:
            out.append(np.asarray(item.PlanePositionSequence[0].ImagePositionPatient, dtype=np.float64))
        return out
    if "ImagePositionPatient" not in ds:
        raise DicomSourceUnavailable(f"instance {ds.SOPInstanceUID} has no ImagePositionPatient")
    return [np.asarray(ds.ImagePositionPatient, dtype=np.float64)]


def find_dicom_source(catalog_path: Path, case_id: str, geometry: Geometry, shape: Sequence[int]) -> DicomSource:
    """Headers of the source instances of ``case_id`` and the volume slice of each frame.

    Args:
        catalog_path: the workspace's ``catalog.sqlite``.
        case_id: the case.
        geometry: geometry of the case's native ``(z, y, x)`` volume.
        shape: its shape.

    Raises:
        DicomSourceUnavailable: not a DICOM case (NIfTI/NRRD import), files missing, no
            FrameOfReferenceUID (a SEG must share its source's), or frames that do not map one-to-one
            onto the volume's slices. The message says why.
    """
    row, files = _catalog_rows(catalog_path, case_id)
    series_uid = str(row["series_uid"])
    if series_uid.startswith("file:"):
        raise DicomSourceUnavailable(f"case {case_id} was imported from a NIfTI/NRRD file, not DICOM")
    wanted = set(json.loads(row["sop_uids"] or "[]"))
    paths = sorted({p for p, uid in files if uid in wanted})
    if not paths:
        raise DicomSourceUnavailable(f"case {case_id}: no source instance files of series {series_uid} in the catalog")
    missing = [p for p in paths if not Path(p).is_file()]
    if missing:
        raise DicomSourceUnavailable(
            f"case {case_id}: {len(missing)} source file(s) are gone, e.g. {missing[0]}; re-ingest or restore them"
        )
    nz, ny, nx = (int(s) for s in shape)
    datasets: list[Dataset] = []
    frame_slices: list[tuple[int, ...]] = []
    seen: set[int] = set()
    for path in paths:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        if not ds.get("FrameOfReferenceUID"):
            raise DicomSourceUnavailable(
                f"case {case_id}: {path} has no FrameOfReferenceUID; a DICOM SEG must carry its source's frame "
                "of reference for a viewer to overlay it, so none is written"
            )
        if (int(ds.Rows), int(ds.Columns)) != (ny, nx):
            raise DicomSourceUnavailable(
                f"case {case_id}: {path} has {ds.Rows}x{ds.Columns} pixels, the volume {ny}x{nx}"
            )
        ks = []
        for ipp in _frame_positions(ds):
            idx = geometry.lps_to_index(ipp)
            k = int(round(float(idx[0])))
            if np.max(np.abs(idx - (k, 0, 0))) > POSITION_TOLERANCE_VOXELS or not 0 <= k < nz or k in seen:
                raise DicomSourceUnavailable(
                    f"case {case_id}: a frame of {path} at {ipp.tolist()} mm is not on a free slice of the "
                    f"volume (index {np.round(idx, 3).tolist()}); the volume no longer matches its source"
                )
            seen.add(k)
            ks.append(k)
        datasets.append(ds)
        frame_slices.append(tuple(ks))
    if len(datasets) > 1 and any(len(ks) > 1 for ks in frame_slices):
        raise DicomSourceUnavailable(
            f"case {case_id}: the stack spans several multi-frame instances; a SEG can reference only one"
        )
    if len(seen) != nz:
        raise DicomSourceUnavailable(f"case {case_id}: source frames cover {len(seen)} of the {nz} slices")
    order = sorted(range(len(datasets)), key=lambda i: frame_slices[i][0])
    return DicomSource(
        case_id=case_id,
        study_key=str(row["study_key"] or "unknown-study"),
        series_uid=series_uid,
        datasets=tuple(datasets[i] for i in order),
        frame_slices=tuple(frame_slices[i] for i in order),
        slice_spacing_mm=float(geometry.spacing[0]),
    )


def segment_descriptions(
    label_names: Mapping[int, str], family: str, version: str
) -> list[hd.seg.SegmentDescription]:
    """One AUTOMATIC segment per class (segment ``i`` = the ``i``-th class value in ascending order)."""
    algorithm = hd.AlgorithmIdentificationSequence(
        name=algorithm_name(family), family=codes.DCM.ArtificialIntelligence, version=version[:64], source="medseg"
    )
    out = []
    for number, value in enumerate(sorted(label_names), start=1):
        name = str(label_names[value])
        category, prop = segment_codes(name)
        out.append(
            hd.seg.SegmentDescription(
                segment_number=number,
                segment_label=segment_label(name),
                segmented_property_category=category,
                segmented_property_type=prop,
                algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
                algorithm_identification=algorithm,
                tracking_id=f"{name} ({value})"[:64],
                tracking_uid=generate_uid(entropy_srcs=["medseg-segment", family, version, str(value), name]),
            )
        )
    return out


def with_type2_attributes(ds: Dataset, slice_spacing_mm: float) -> Dataset:
    """``ds``, or a copy with the missing :data:`TYPE2_SOURCE_ATTRIBUTES` added empty and SliceThickness.

    DICOM requires them present (empty when unknown); highdicom reads them from the source and
    fails when a real archive omits them (seen on the dicom2nifti compressed series: no PatientSex,
    no SliceThickness). The SEG's PixelMeasuresSequence needs a SliceThickness (highdicom cannot
    read the SEG back without one): where the source has none, each SEG frame stands for the slab
    between slice centres, ``slice_spacing_mm`` thick.
    """
    missing = [key for key in TYPE2_SOURCE_ATTRIBUTES if key not in ds]
    thickness = ds.get("SliceThickness") not in (None, "")
    if not missing and (thickness or "PerFrameFunctionalGroupsSequence" in ds):
        return ds
    out = copy.deepcopy(ds)
    for key in missing:
        setattr(out, key, None)  # pydicom: an element with an empty value
    if not thickness and "PerFrameFunctionalGroupsSequence" not in ds:
        out.SliceThickness = f"{slice_spacing_mm:.6g}"
    return out


def build_prediction_seg(
    source: DicomSource,
    label_zyx: NDArray[np.uint8],
    label_names: Mapping[int, str],
    family: str,
    version: str,
) -> hd.seg.Segmentation:
    """A BINARY SEG of ``label_zyx`` (native grid of ``source``) with one segment per ``label_names`` class.

    Args:
        source: the case's source instances (see :func:`find_dicom_source`).
        label_zyx: ``(z, y, x)`` predicted label map on the volume grid (class values).
        label_names: ``{class value: name}`` of the foreground classes (the bundle's plan).
        family: model family, recorded in the SEG.
        version: model version, recorded in the SEG.
    """
    classes = sorted(int(v) for v in label_names if int(v) != 0)
    if not classes:
        raise ValueError(f"label_names {dict(label_names)} has no foreground class")
    unknown = sorted(set(np.unique(label_zyx).tolist()) - {0, *classes})
    if unknown:
        raise ValueError(f"label values {unknown} are not classes of the model ({dict(label_names)})")
    lut = np.zeros(max(classes) + 1, dtype=np.uint8)
    lut[classes] = np.arange(1, len(classes) + 1, dtype=np.uint8)  # class value -> segment number
    multi = len(source.datasets) == 1 and len(source.frame_slices[0]) > 1
    order = list(source.frame_slices[0]) if multi else [ks[0] for ks in source.frame_slices]
    frames = lut[np.asarray(label_zyx)[order]]
    uid_seed = [source.series_uid, family, version]
    description = f"medseg {family} {version}"[:64]
    return hd.seg.Segmentation(
        source_images=[with_type2_attributes(ds, source.slice_spacing_mm) for ds in source.datasets],
        pixel_array=frames,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=segment_descriptions({v: label_names[v] for v in classes}, family, version),
        series_instance_uid=generate_uid(entropy_srcs=["medseg-seg-series", *uid_seed]),
        series_number=SEG_SERIES_NUMBER,
        sop_instance_uid=generate_uid(entropy_srcs=["medseg-seg-instance", *uid_seed]),
        instance_number=1,
        manufacturer="medseg",
        manufacturer_model_name=f"medseg {family}"[:64],
        software_versions=f"medseg-{medseg.__version__} {family}/{version}"[:64],
        device_serial_number=version[:64],
        content_description=f"model {family} {version}"[:64],
        content_creator_name=f"medseg^{family}",
        content_label=f"MEDSEG_{family.upper()}"[:16],
        series_description=description,
        omit_empty_frames=bool(frames.any()),
    )


def write_seg_atomic(seg: hd.seg.Segmentation, path: Path, verify: Callable[[Path], None] | None = None) -> Path:
    """Save ``seg`` to ``path`` through a temporary sibling and a rename (never a half-written file).

    ``verify`` (e.g. :func:`~medseg.io.dicom.seg_check.require_consistent_seg`) is called on the
    temporary file before the rename; when it raises, the file is removed and ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        seg.save_as(tmp, enforce_file_format=True)
        if verify is not None:
            verify(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_prediction_seg(
    catalog_path: Path,
    prediction_dir: Path,
    case_id: str,
    label_zyx: NDArray[np.uint8],
    geometry: Geometry,
    label_names: Mapping[int, str],
    family: str,
    version: str,
    path: Path | None = None,
) -> Path:
    """Find the case's DICOM source, build its SEG, check it and write it.

    ``path`` is where the SEG goes; None: the workspace layout (see the module docstring) under
    ``prediction_dir`` (``medseg predict`` names its SEG files after the study instead).
    The written file is read back with highdicom and pydicom and checked against the source headers
    and ``label_zyx`` (:func:`~medseg.io.dicom.seg_check.check_seg`) before it takes its place; a
    SEG that fails is not written and an older SEG at the same path (from an earlier prediction of
    this model version) is removed, so no SEG is left that does not match this prediction.

    Raises:
        DicomSourceUnavailable: the case has no usable DICOM source (the caller logs and skips).
        SegCheckError: the SEG does not match its source series or the label map (a writer defect:
            the message lists every problem found).
    """
    source = find_dicom_source(catalog_path, case_id, geometry, label_zyx.shape)
    seg = build_prediction_seg(source, label_zyx, label_names, family, version)
    target = path or seg_path(prediction_dir, source.study_key, case_id)
    expected = ExpectedSeg(label_zyx=label_zyx, geometry=geometry, label_names=label_names, family=family,
                           version=version)

    def verify(written: Path) -> None:
        problems = check_seg(written, source.datasets, expected)
        if problems:
            raise SegCheckError(target, problems)

    try:
        return write_seg_atomic(seg, target, verify)
    except SegCheckError:
        target.unlink(missing_ok=True)
        raise
