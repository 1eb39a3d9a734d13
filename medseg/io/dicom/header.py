"""The typed header of one DICOM instance, and the one function that describes it from a tag source.

:func:`describe` holds the field logic (which object it is, the de-identified keys, why a file is
not usable); a :class:`TagSource` says how the tags are read. Two sources feed it
(:mod:`medseg.io.dicom.header_sources`): a pydicom Dataset, and the fields of the fast walk
(:mod:`medseg.io.dicom.fast_walk`), which *declines* (raises
:class:`~medseg.io.dicom.fast_walk.Decline`) where only pydicom can decide.

Identifying attributes (PatientID, StudyInstanceUID) are replaced by keyed hashes *here*, so they
never leave the worker that read the file. SeriesInstanceUID / SOPInstanceUID are kept: the catalog
needs them to resolve DICOM SEG references and to write DICOM SEG back later. The acquisition descriptors
(Manufacturer, ManufacturerModelName, ProtocolName) are kept in clear like SeriesDescription: they identify
a scanner type and protocol, not a patient, and feed the drift report (:mod:`medseg.drift`).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

from medseg.deid import keyed_hash
from medseg.io.dicom.fast_walk import SEG_SOP_CLASSES
from medseg.io.dicom.rtstruct import RTSTRUCT_SOP_CLASS
from medseg.io.dicom.uid_fallback import fallback_message, fallback_uids
from medseg.io.reasons import IngestError, Reason

DICOMDIR_CLASS = "1.2.840.10008.1.3.10"
NON_IMAGE_MODALITIES = frozenset({"SR", "RTSTRUCT", "RTPLAN", "RTDOSE", "RTRECORD", "PR", "KO", "ANN", "REG", "DOC"})
_GEOMETRY_NAMES = {"ipp": "ImagePositionPatient", "iop": "ImageOrientationPatient", "spacing": "PixelSpacing"}


class InstanceKind(StrEnum):
    """What an instance is, from its SOP Class UID (or Modality): only these three are ingested."""

    IMAGE = "image"
    SEG = "seg"
    RTSTRUCT = "rtstruct"
    OTHER = "other"  # SR, RTPLAN, presentation states ...: never described (quarantined ``unsupported_object``)


def instance_kind(sop_class: str, modality: str) -> InstanceKind:
    """The kind of an instance; IMAGE also for objects that turn out to have no image matrix."""
    if sop_class in SEG_SOP_CLASSES or modality == "SEG":
        return InstanceKind.SEG
    if sop_class == RTSTRUCT_SOP_CLASS or modality == "RTSTRUCT":
        return InstanceKind.RTSTRUCT
    if modality in NON_IMAGE_MODALITIES:
        return InstanceKind.OTHER
    return InstanceKind.IMAGE


@dataclass(slots=True)
class InstanceHeader:
    """The header fields medseg uses of one DICOM instance (de-identified).

    ``frames`` (``{"ipp", "iop", "spacing"}`` per frame) and ``pixel`` (native layout, see
    :func:`~medseg.io.dicom.fast_walk.pixel_layout`) are set for images; the ``ref_*`` lists for SEG
    (series, instances) and RTSTRUCT (also frames of reference). :meth:`as_dict` gives the plain,
    JSON-serialisable form the catalog stores (``kind`` as its string value).
    """

    kind: InstanceKind
    sop_class: str
    sop_name: str
    sop_uid: str
    series_uid: str
    study_key: str
    patient_key: str
    modality: str
    description: str
    manufacturer: str
    model_name: str
    protocol: str
    series_number: int | None
    for_uid: str
    image_type: list[str]
    rows: int | None
    cols: int | None
    samples: int
    transfer_syntax: str
    n_frames: int
    frames: list[dict[str, list[float] | None]] | None = None
    pixel: dict[str, Any] | None = None
    ref_series_uids: list[str] | None = None
    ref_sop_uids: list[str] | None = None
    ref_for_uids: list[str] | None = None
    uid_fallback: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """``status: ok`` header dict: the fields above, the unset optional ones left out."""
        out: dict[str, Any] = {
            "status": "ok",
            "sop_class": self.sop_class,
            "sop_name": self.sop_name,
            "sop_uid": self.sop_uid,
            "series_uid": self.series_uid,
            "study_key": self.study_key,
            "patient_key": self.patient_key,
            "modality": self.modality,
            "description": self.description,
            "manufacturer": self.manufacturer,
            "model_name": self.model_name,
            "protocol": self.protocol,
            "series_number": self.series_number,
            "for_uid": self.for_uid,
            "image_type": self.image_type,
            "rows": self.rows,
            "cols": self.cols,
            "samples": self.samples,
            "transfer_syntax": self.transfer_syntax,
            "n_frames": self.n_frames,
            "kind": self.kind.value,
        }
        if self.kind is InstanceKind.IMAGE:
            out["frames"] = self.frames
            out["pixel"] = self.pixel
        else:
            out["ref_series_uids"] = self.ref_series_uids
            out["ref_sop_uids"] = self.ref_sop_uids
            if self.kind is InstanceKind.RTSTRUCT:
                out["ref_for_uids"] = self.ref_for_uids
        if self.uid_fallback is not None:
            out["uid_fallback"] = self.uid_fallback
        return out


class TagSource(Protocol):
    """How :func:`describe` reads the tags of one instance (DICOM keywords)."""

    def text(self, keyword: str) -> str:
        """Single-valued text ("" when absent)."""

    def integer(self, keyword: str) -> int | None:
        """An integer value (None when absent or not an integer)."""

    def strings(self, keyword: str) -> list[str]:
        """A multi-valued text attribute (ImageType) as a list."""

    def meta(self, keyword: str) -> str:
        """A file meta attribute (TransferSyntaxUID, MediaStorageSOPClassUID); "" when absent."""

    def fallback_fields(self) -> dict[str, Any]:
        """The attributes of the stand-in series key (see :mod:`medseg.io.dicom.uid_fallback`)."""

    def seg_references(self) -> tuple[list[str], list[str]]:
        """A SEG's referenced series and instances (sorted, unique)."""

    def rtstruct_references(self) -> tuple[list[str], list[str], list[str]]:
        """An RTSTRUCT's referenced series, instances and frames of reference."""

    def frames(self) -> list[dict[str, list[float] | None]]:
        """Per-frame ``{"ipp", "iop", "spacing"}`` of an image (None where absent)."""

    def pixel(self, header: InstanceHeader) -> dict[str, Any] | None:
        """Native pixel layout of the image, or None (decode with pydicom)."""


@functools.lru_cache(maxsize=4096)
def _identity_keys(secret: str, series_uid: str, study_uid: str, patient_id: str) -> tuple[str, str]:
    return (
        keyed_hash(secret, study_uid or f"series:{series_uid}", prefix="study_"),
        keyed_hash(secret, patient_id or f"study:{study_uid or series_uid}", prefix="pat_"),
    )


def identity_keys(secret: str, series_uid: str, study_uid: str, patient_id: str) -> dict[str, str]:
    """De-identified study and patient keys (keyed hashes; fall back to the next UID up when one is missing).

    Cached: the files of one series share their keys, and each key is an HMAC.
    """
    study_key, patient_key = _identity_keys(secret, series_uid, study_uid, patient_id)
    return {"study_key": study_key, "patient_key": patient_key}


@functools.lru_cache(maxsize=256)
def sop_name(sop_class: str) -> str:
    """The name of a SOP Class UID (the UID itself when pydicom does not know it)."""
    import pydicom.uid

    return pydicom.uid.UID(sop_class).name if sop_class else "unknown SOP class"


def describe(tags: TagSource, path: str | Path, secret: str) -> InstanceHeader:
    """The header of one instance; raises :class:`~medseg.io.reasons.IngestError` when it is not usable."""
    sop_class, modality = tags.text("SOPClassUID"), tags.text("Modality")
    sop_uid, series_uid = tags.text("SOPInstanceUID"), tags.text("SeriesInstanceUID")
    if tags.meta("MediaStorageSOPClassUID") == DICOMDIR_CLASS:  # an index of other files, not an image
        raise IngestError(
            Reason.UNSUPPORTED_OBJECT,
            f"{path}: DICOMDIR (media directory index); the files it lists are ingested on their own",
        )
    kind = instance_kind(sop_class, modality)
    rows, cols = tags.integer("Rows"), tags.integer("Columns")
    uid_note = None
    if not sop_uid or not series_uid:
        labels = kind in (InstanceKind.SEG, InstanceKind.RTSTRUCT)
        if labels or not rows or not cols:  # only images are grouped without UIDs
            raise IngestError(
                Reason.MISSING_UIDS,
                f"{path}: DICOM {'label object ' if labels else ''}without SOPInstanceUID/SeriesInstanceUID; "
                "it cannot be grouped into a series or referenced",
            )
        uid_note = fallback_message(str(path), not sop_uid, not series_uid)
        fields = {**tags.fallback_fields(), "folder": str(Path(path).parent)}
        sop_uid, series_uid = fallback_uids(secret, fields, str(path), sop_uid, series_uid)
    try:
        name = sop_name(sop_class)
    except Exception:  # noqa: BLE001
        name = sop_class
    study_key, patient_key = _identity_keys(secret, series_uid, tags.text("StudyInstanceUID"), tags.text("PatientID"))
    header = InstanceHeader(
        kind=kind,
        sop_class=sop_class,
        sop_name=name,
        sop_uid=sop_uid,
        series_uid=series_uid,
        study_key=study_key,
        patient_key=patient_key,
        modality=modality,
        description=tags.text("SeriesDescription"),
        manufacturer=tags.text("Manufacturer"),
        model_name=tags.text("ManufacturerModelName"),
        protocol=tags.text("ProtocolName"),
        series_number=tags.integer("SeriesNumber"),
        for_uid=tags.text("FrameOfReferenceUID"),
        image_type=tags.strings("ImageType"),
        rows=rows,
        cols=cols,
        samples=tags.integer("SamplesPerPixel") or 1,
        transfer_syntax=tags.meta("TransferSyntaxUID"),
        n_frames=tags.integer("NumberOfFrames") or 1,
    )
    if kind is InstanceKind.SEG:
        header.ref_series_uids, header.ref_sop_uids = tags.seg_references()
        return header
    if kind is InstanceKind.RTSTRUCT:
        header.ref_series_uids, header.ref_sop_uids, header.ref_for_uids = tags.rtstruct_references()
        return header
    _check_image(header, tags, path)
    frames = header.frames = tags.frames()
    if any(None in f.values() for f in frames):  # each frame is {"ipp", "iop", "spacing"}
        missing = [k for k in ("ipp", "iop", "spacing") if any(f[k] is None for f in frames)]
        raise IngestError(
            Reason.NO_GEOMETRY,
            f"{path}: {name} ({modality}) lacks {', '.join(_GEOMETRY_NAMES[m] for m in missing)}; it cannot be "
            "placed in patient space (not a cross-sectional volume)",
        )
    header.pixel = tags.pixel(header)
    header.uid_fallback = uid_note
    return header


def _check_image(header: InstanceHeader, tags: TagSource, path: str | Path) -> None:
    """Raise ``unsupported_object`` / ``color_image`` for what is not a grayscale image."""
    modality, name = header.modality, header.sop_name
    if not header.rows or not header.cols or header.kind is InstanceKind.OTHER:
        not_image = modality in NON_IMAGE_MODALITIES
        raise IngestError(
            Reason.UNSUPPORTED_OBJECT,
            f"{path}: {name} ({modality or 'no modality'}) "
            + ("is not an image" if not_image else "has no image matrix (no Rows/Columns)")
            + "; not used by medseg",
        )
    if header.samples != 1:
        raise IngestError(
            Reason.COLOR_IMAGE,
            f"{path}: {name} has SamplesPerPixel={header.samples} "
            f"({tags.text('PhotometricInterpretation') or '?'}); only grayscale volumes can be segmented",
        )
