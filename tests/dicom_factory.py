"""Tiny synthetic DICOM writers for ingest tests (CT slices with known geometry, DICOM SEG)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import highdicom as hd
import numpy as np
from numpy.typing import NDArray
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sr.codedict import codes
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, RTStructureSetStorage, generate_uid

PATIENT_NAME = "SECRET^PATIENT"
PATIENT_ID = "PID-TOP-SECRET-4711"
BIRTH_DATE = "19450102"
ACCESSION = "ACC-SECRET-99"


def ct_slices(
    n: int = 5,
    rows: int = 8,
    cols: int = 10,
    spacing: tuple[float, float] = (0.8, 0.6),
    step: float = 2.5,
    origin: Sequence[float] = (-10.0, -20.0, 30.0),
    iop: Sequence[float] = (1, 0, 0, 0, 1, 0),
    step_vector: Sequence[float] | None = None,
    series_uid: str | None = None,
    study_uid: str | None = None,
    patient_id: str = PATIENT_ID,
    slope: float = 1.0,
    intercept: float = -1024.0,
    seed: int = 0,
    description: str = "test CT",
    modality: str = "CT",
) -> tuple[list[Dataset], NDArray[np.int16]]:
    """``n`` CT slices in stacking order and the expected ``(z, y, x)`` stored-value volume.

    Slice k sits at ``origin + k * step * normal`` (or ``k * step_vector`` when given).
    """
    rng = np.random.default_rng(seed)
    stored = rng.integers(0, 2000, size=(n, rows, cols)).astype(np.int16)
    series_uid = series_uid or generate_uid()
    study_uid = study_uid or generate_uid()
    for_uid = generate_uid()
    row, col = np.asarray(iop[:3], float), np.asarray(iop[3:], float)
    normal = np.cross(row, col)
    vec = np.asarray(step_vector, float) if step_vector is not None else step * normal
    out = []
    for k in range(n):
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
        sop = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = sop
        ds.SOPClassUID = CTImageStorage
        ds.SOPInstanceUID = sop
        ds.PatientName = PATIENT_NAME
        ds.PatientID = patient_id
        ds.PatientBirthDate = BIRTH_DATE
        ds.PatientSex = "O"
        ds.AccessionNumber = ACCESSION
        ds.StudyInstanceUID = study_uid
        ds.SeriesInstanceUID = series_uid
        ds.FrameOfReferenceUID = for_uid
        ds.StudyID = "1"
        ds.StudyDate = "20200101"
        ds.StudyTime = "120000"
        ds.ReferringPhysicianName = ""
        ds.Modality = modality
        ds.Manufacturer = "medseg-tests"
        ds.SeriesNumber = 3
        ds.InstanceNumber = k + 1
        ds.SeriesDescription = description
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.ImagePositionPatient = [f"{v:.6f}" for v in np.asarray(origin, float) + k * vec]
        ds.ImageOrientationPatient = [f"{v:.6f}" for v in iop]
        ds.PixelSpacing = [f"{spacing[0]}", f"{spacing[1]}"]
        ds.SliceThickness = f"{step}"
        ds.Rows, ds.Columns = rows, cols
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleSlope = f"{slope}"
        ds.RescaleIntercept = f"{intercept}"
        ds.RescaleType = "HU"
        ds.PixelData = stored[k].tobytes()
        out.append(ds)
    return out, stored


def write(datasets: Sequence[Dataset], folder: Path, names: Sequence[str] | None = None) -> list[Path]:
    """Write datasets into ``folder`` (names default to opaque ``img_<sop hash>``, no extension)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, ds in enumerate(datasets):
        name = names[i] if names else f"img{abs(hash(ds.SOPInstanceUID)) % 10**8:08d}"
        p = folder / name
        ds.save_as(p, enforce_file_format=True)
        paths.append(p)
    return paths


def seg_for(
    sources: Sequence[Dataset],
    masks: NDArray[np.bool_] | NDArray[np.floating],
    names: Sequence[str] = ("organ",),
    fractional: bool = False,
) -> hd.seg.Segmentation:
    """A DICOM SEG on ``sources`` (in the given order); ``masks`` is ``(frames, rows, cols, segments)``."""
    descs = [
        hd.seg.SegmentDescription(
            segment_number=i + 1,
            segment_label=name,
            segmented_property_category=codes.SCT.Organ,
            segmented_property_type=codes.SCT.Liver,
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL,
        )
        for i, name in enumerate(names)
    ]
    pixel = masks.astype(np.float32) if fractional else masks.astype(bool)
    return hd.seg.Segmentation(
        source_images=list(sources),
        pixel_array=pixel,
        segmentation_type=hd.seg.SegmentationTypeValues.FRACTIONAL
        if fractional
        else hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descs,
        series_instance_uid=generate_uid(),
        series_number=99,
        sop_instance_uid=generate_uid(),
        instance_number=1,
        manufacturer="medseg-tests",
        manufacturer_model_name="tests",
        software_versions="0",
        device_serial_number="0",
        max_fractional_value=255,
        omit_empty_frames=False,
    )


def rtstruct_for(
    sources: Sequence[Dataset],
    rois: Sequence[tuple[str, Sequence[tuple[NDArray[np.floating], int | None]]]],
    reference_series: bool = True,
) -> Dataset:
    """A minimal RT Structure Set on the series of ``sources``.

    ``rois`` is ``[(ROIName, [(points (n, 3) LPS mm, index of the source slice it names or None), ...])]``;
    ROI numbers are 1..n in that order.
    """
    first = sources[0]
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = RTStructureSetStorage
    sop = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = sop
    ds.SOPClassUID, ds.SOPInstanceUID = RTStructureSetStorage, sop
    ds.Modality = "RTSTRUCT"
    for kw in ("PatientName", "PatientID", "PatientBirthDate", "StudyInstanceUID", "StudyDate", "AccessionNumber"):
        setattr(ds, kw, getattr(first, kw))
    ds.SeriesInstanceUID = generate_uid()
    ds.SeriesNumber = 7
    ds.SeriesDescription = "structures"
    ds.StructureSetLabel = "test"
    rfor = Dataset()
    rfor.FrameOfReferenceUID = first.FrameOfReferenceUID
    if reference_series:
        study = Dataset()
        study.ReferencedSOPClassUID = "1.2.840.10008.3.1.2.3.1"
        study.ReferencedSOPInstanceUID = first.StudyInstanceUID
        series = Dataset()
        series.SeriesInstanceUID = first.SeriesInstanceUID
        images = []
        for src in sources:
            ci = Dataset()
            ci.ReferencedSOPClassUID = src.SOPClassUID
            ci.ReferencedSOPInstanceUID = src.SOPInstanceUID
            images.append(ci)
        series.ContourImageSequence = images
        study.RTReferencedSeriesSequence = [series]
        rfor.RTReferencedStudySequence = [study]
    ds.ReferencedFrameOfReferenceSequence = [rfor]
    ssroi, roic = [], []
    for number, (name, contours) in enumerate(rois, start=1):
        item = Dataset()
        item.ROINumber = number
        item.ReferencedFrameOfReferenceUID = first.FrameOfReferenceUID
        item.ROIName = name
        item.ROIGenerationAlgorithm = "MANUAL"
        ssroi.append(item)
        rc = Dataset()
        rc.ReferencedROINumber = number
        rc.ROIDisplayColor = [255, 0, 0]
        seq = []
        for points, slice_index in contours:
            c = Dataset()
            c.ContourGeometricType = "CLOSED_PLANAR"
            pts = np.asarray(points, float).reshape(-1, 3)
            c.NumberOfContourPoints = len(pts)
            c.ContourData = [f"{v:.6f}" for v in pts.ravel()]
            if slice_index is not None:
                ci = Dataset()
                ci.ReferencedSOPClassUID = sources[slice_index].SOPClassUID
                ci.ReferencedSOPInstanceUID = sources[slice_index].SOPInstanceUID
                c.ContourImageSequence = [ci]
            seq.append(c)
        rc.ContourSequence = seq
        roic.append(rc)
    ds.StructureSetROISequence = ssroi
    ds.ROIContourSequence = roic
    return ds
