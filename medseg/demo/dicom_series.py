"""Write a volume as a series of single-frame CT Image Storage files (pydicom 3).

Geometry follows :mod:`medseg.geometry` exactly: for a ``(Z, Y, X)`` array with geometry ``g``
(``D = g.direction_matrix``, ``s = g.spacing``):

* slice ``k``'s ImagePositionPatient is ``g.origin + D[:, 0] * s[0] * k``;
* ImageOrientationPatient is ``D[:, 2]`` (along a row, i.e. increasing column ``i``) followed by
  ``D[:, 1]`` (down a column, i.e. increasing row ``j``);
* PixelSpacing is ``[s[1], s[2]]`` (row spacing, column spacing); SliceThickness and
  SpacingBetweenSlices are ``s[0]``.

Stored values are ``hu - RescaleIntercept`` with RescaleSlope 1 (see :class:`PixelEncoding`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, CTImageStorage, ExplicitVRLittleEndian, generate_uid
from pydicom.valuerep import format_number_as_ds

from medseg.geometry import Geometry

#: UID root used for every UID of the demo archive (pydicom's documented example root).
UID_PREFIX = "1.2.826.0.1.3680043.8.498."
IMPLEMENTATION_VERSION = "MEDSEG_DEMO_1"
MANUFACTURER = "medseg"
MODEL_NAME = "medseg demo phantom"


@dataclass(frozen=True)
class PixelEncoding:
    """How HU are stored: ``stored = hu - intercept`` (slope 1).

    Attributes:
        signed: PixelRepresentation 1 (int16) if True, else 0 (uint16).
        bits_stored: 12 or 16 (HighBit = bits_stored - 1).
        intercept: RescaleIntercept in HU (-1024 or 0).
    """

    signed: bool
    bits_stored: int
    intercept: int

    @property
    def name(self) -> str:
        return f"{'int' if self.signed else 'uint'}{self.bits_stored}_icpt{self.intercept}"

    def encode(self, hu: NDArray[np.integer]) -> NDArray[np.integer]:
        """Map HU ``(...)`` to stored little-endian values ``(...)``; raises if out of range."""
        stored = np.asarray(hu, dtype=np.int32) - self.intercept
        if self.signed:
            lo, hi = -(2 ** (self.bits_stored - 1)), 2 ** (self.bits_stored - 1) - 1
        else:
            lo, hi = 0, 2**self.bits_stored - 1
        if stored.size and (stored.min() < lo or stored.max() > hi):
            raise ValueError(
                f"PixelEncoding {self.name}: HU range [{int(hu.min())}, {int(hu.max())}] does not fit stored "
                f"range [{lo}, {hi}]; clip the HU or choose another encoding"
            )
        return stored.astype("<i2" if self.signed else "<u2")


#: Encodings the demo archive cycles through (all common on real CT scanners).
ENCODINGS: tuple[PixelEncoding, ...] = (
    PixelEncoding(signed=False, bits_stored=12, intercept=-1024),
    PixelEncoding(signed=True, bits_stored=16, intercept=-1024),
    PixelEncoding(signed=True, bits_stored=16, intercept=0),
)


@dataclass(frozen=True)
class SeriesIdentity:
    """Patient/study/series identifiers written into every image (fake PHI included on purpose)."""

    patient_id: str
    patient_name: str
    patient_birth_date: str  # YYYYMMDD
    patient_sex: str
    accession_number: str
    study_instance_uid: str
    study_id: str
    study_date: str  # YYYYMMDD
    study_time: str  # HHMMSS
    study_description: str
    series_instance_uid: str
    series_number: int
    series_description: str
    frame_of_reference_uid: str
    institution_name: str = "Demo General Hospital"
    referring_physician_name: str = "Referrer^Demo"


def _ds(values: Sequence[float] | NDArray[np.floating]) -> list[str]:
    """Format numbers as valid (<= 16 character) DICOM DS strings."""
    return [format_number_as_ds(float(v)) for v in np.asarray(values, dtype=np.float64).ravel()]


def slice_position(geometry: Geometry, k: int) -> NDArray[np.float64]:
    """ImagePositionPatient (LPS mm, shape ``(3,)``) of slice ``k``."""
    d = geometry.direction_matrix
    return np.asarray(geometry.origin, dtype=np.float64) + d[:, 0] * geometry.spacing[0] * k


def image_orientation(geometry: Geometry) -> NDArray[np.float64]:
    """ImageOrientationPatient ``(6,)``: row direction ``D[:, 2]``, then column direction ``D[:, 1]``."""
    d = geometry.direction_matrix
    return np.concatenate([d[:, 2], d[:, 1]])


def file_stem(sop_instance_uid: str) -> str:
    """Deterministic, non-sequential file name stem derived from a SOP Instance UID."""
    return hashlib.sha1(sop_instance_uid.encode("ascii")).hexdigest()[:20]


def build_ct_slices(
    hu: NDArray[np.int16],
    geometry: Geometry,
    identity: SeriesIdentity,
    encoding: PixelEncoding,
    uid_entropy: Sequence[str],
) -> list[FileDataset]:
    """Build one CT Image Storage dataset per slice (not yet written).

    Args:
        hu: ``(Z, Y, X)`` int16 Hounsfield units.
        geometry: Geometry of ``hu`` (see :mod:`medseg.geometry`); its direction must be orthonormal
            with ``D[:, 0] == cross(D[:, 2], D[:, 1])`` (slices stacked along the DICOM normal).
        identity: Identifiers shared by all slices.
        encoding: Stored pixel representation.
        uid_entropy: Strings that make the SOP Instance UIDs unique and deterministic.

    Returns:
        ``Z`` datasets ordered by slice index ``k`` (InstanceNumber ``k + 1``).
    """
    if hu.ndim != 3:
        raise ValueError(f"build_ct_slices: hu must be a (Z, Y, X) array, got shape {hu.shape}")
    d = geometry.direction_matrix
    orthonormal = np.allclose(d.T @ d, np.eye(3), atol=1e-6)
    if not orthonormal or not np.allclose(np.cross(d[:, 2], d[:, 1]), d[:, 0], atol=1e-6):
        raise ValueError(
            f"build_ct_slices: direction {d.tolist()} must be orthonormal with column 0 = "
            "cross(column 2, column 1) so that slices stack along the DICOM slice normal"
        )
    stored = encoding.encode(hu)
    iop = _ds(image_orientation(geometry))
    normal = d[:, 0]
    nz, ny, nx = hu.shape
    datasets: list[FileDataset] = []
    for k in range(nz):
        sop_uid = generate_uid(prefix=UID_PREFIX, entropy_srcs=[*uid_entropy, "ct-image", str(k)])
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = sop_uid
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
        meta.ImplementationVersionName = IMPLEMENTATION_VERSION
        ds = FileDataset(f"{file_stem(sop_uid)}.dcm", {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SpecificCharacterSet = "ISO_IR 100"
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.SOPClassUID = CTImageStorage
        ds.SOPInstanceUID = sop_uid
        ds.StudyDate = identity.study_date
        ds.SeriesDate = identity.study_date
        ds.AcquisitionDate = identity.study_date
        ds.ContentDate = identity.study_date
        ds.StudyTime = identity.study_time
        ds.SeriesTime = identity.study_time
        ds.AcquisitionTime = identity.study_time
        ds.ContentTime = identity.study_time
        ds.AccessionNumber = identity.accession_number
        ds.Modality = "CT"
        ds.Manufacturer = MANUFACTURER
        ds.InstitutionName = identity.institution_name
        ds.ReferringPhysicianName = identity.referring_physician_name
        ds.StudyDescription = identity.study_description
        ds.SeriesDescription = identity.series_description
        ds.ManufacturerModelName = MODEL_NAME
        ds.PatientName = identity.patient_name
        ds.PatientID = identity.patient_id
        ds.PatientBirthDate = identity.patient_birth_date
        ds.PatientSex = identity.patient_sex
        ds.BodyPartExamined = "ABDOMEN"
        ds.SliceThickness = _ds([geometry.spacing[0]])[0]
        ds.KVP = "120"
        ds.SpacingBetweenSlices = _ds([geometry.spacing[0]])[0]
        ds.PatientPosition = "HFS"
        ds.StudyInstanceUID = identity.study_instance_uid
        ds.SeriesInstanceUID = identity.series_instance_uid
        ds.StudyID = identity.study_id
        ds.SeriesNumber = identity.series_number
        ds.AcquisitionNumber = 1
        ds.InstanceNumber = k + 1
        position = slice_position(geometry, k)
        ds.ImagePositionPatient = _ds(position)
        ds.ImageOrientationPatient = iop
        ds.FrameOfReferenceUID = identity.frame_of_reference_uid
        ds.PositionReferenceIndicator = ""
        ds.SliceLocation = _ds([float(position @ normal)])[0]
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows = ny
        ds.Columns = nx
        ds.PixelSpacing = _ds([geometry.spacing[1], geometry.spacing[2]])
        ds.BitsAllocated = 16
        ds.BitsStored = encoding.bits_stored
        ds.HighBit = encoding.bits_stored - 1
        ds.PixelRepresentation = 1 if encoding.signed else 0
        ds.WindowCenter = "40"
        ds.WindowWidth = "400"
        ds.RescaleIntercept = str(encoding.intercept)
        ds.RescaleSlope = "1"
        ds.RescaleType = "HU"
        ds.PixelData = np.ascontiguousarray(stored[k]).tobytes()
        datasets.append(ds)
    return datasets


def write_ct_series(datasets: Sequence[FileDataset], folder: Path) -> list[Path]:
    """Write datasets from :func:`build_ct_slices` into ``folder`` as ``<sha1(SOPInstanceUID)>.dcm``.

    Returns:
        The written paths, in the order of ``datasets``.
    """
    folder.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    for ds in datasets:
        path = folder / f"{file_stem(str(ds.SOPInstanceUID))}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths
