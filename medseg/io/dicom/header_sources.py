"""The two tag sources of :func:`medseg.io.dicom.header.describe`: a pydicom Dataset, and the fast walk's fields.

:class:`DatasetTags` reads any file pydicom reads. :class:`WalkTags` reads the ``{field: value}``
map of :func:`medseg.io.dicom.fast_walk.scan_file` (a classic single-frame image, or a DICOM SEG
whose ReferencedSeriesSequence lists its source instances) and raises
:class:`~medseg.io.dicom.fast_walk.Decline` wherever pydicom must decide: several values in a
single-valued tag, ISO 2022 text, blank UIDs, a DICOMDIR, an RTSTRUCT, several frames, SEG
references only in the per-frame groups, unparsable rescale values.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from medseg.io.dicom.fast_walk import (
    REF_INSTANCES,
    REF_SERIES_UID,
    REF_SOP_UID,
    Decline,
    element_header,
    pixel_layout,
)
from medseg.io.dicom.header import DICOMDIR_CLASS, InstanceHeader
from medseg.io.dicom.rtstruct import rtstruct_references
from medseg.io.dicom.uid_fallback import FALLBACK_KEYWORDS

if TYPE_CHECKING:  # pydicom is imported on first use: the fast path reads most archives without it
    from pydicom.dataset import Dataset

Frames = list[dict[str, list[float] | None]]


def to_int(value: Any) -> int | None:
    """``int(value)``; None when absent or not an integer."""
    try:
        return int(value) if value is not None and value != "" else None
    except (TypeError, ValueError):
        return None


def _floats(value: Any, n: int) -> list[float] | None:
    try:
        out = [float(v) for v in value]
    except (TypeError, ValueError):
        return None
    return out if len(out) == n else None


def _first_item(ds: Dataset, keyword: str) -> Dataset | None:
    seq = ds.get(keyword)
    if seq is None:
        return None
    try:
        return seq[0] if len(seq) else None
    except (TypeError, IndexError):
        return None


def _functional(frame_group: Dataset | None, shared: Dataset | None, seq: str, attr: str) -> Any:
    """Value of ``seq[0].attr`` from the per-frame group, else the shared group."""
    for group in (frame_group, shared):
        if group is None:
            continue
        item = _first_item(group, seq)
        if item is not None and attr in item:
            return item.get(attr)
    return None


def frame_geometry(ds: Dataset) -> Frames:
    """Per-frame IPP/IOP/PixelSpacing of a (single- or multi-frame) image dataset."""
    n_frames = int(ds.get("NumberOfFrames", 1) or 1)
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    shared = _first_item(ds, "SharedFunctionalGroupsSequence")
    top = {
        "ipp": _floats(ds.get("ImagePositionPatient"), 3),
        "iop": _floats(ds.get("ImageOrientationPatient"), 6),
        "spacing": _floats(ds.get("PixelSpacing"), 2),
    }
    if per_frame is None and shared is None:
        if n_frames == 1:
            return [top]
        # classic multi-frame without functional groups: no per-frame position
        return [{"ipp": None, "iop": top["iop"], "spacing": top["spacing"]} for _ in range(n_frames)]
    frames = []
    for f in range(n_frames):
        fg = per_frame[f] if per_frame is not None and f < len(per_frame) else None
        frames.append(
            {
                "ipp": _floats(_functional(fg, shared, "PlanePositionSequence", "ImagePositionPatient"), 3)
                or (top["ipp"] if n_frames == 1 else None),
                "iop": _floats(_functional(fg, shared, "PlaneOrientationSequence", "ImageOrientationPatient"), 6)
                or top["iop"],
                "spacing": _floats(_functional(fg, shared, "PixelMeasuresSequence", "PixelSpacing"), 2)
                or top["spacing"],
            }
        )
    return frames


class DatasetTags:
    """Tags of a pydicom Dataset read by :func:`medseg.io.dicom.read.read_dataset` (pixel data not read)."""

    __slots__ = ("ds",)

    def __init__(self, ds: Dataset) -> None:
        self.ds = ds

    def text(self, keyword: str) -> str:
        return str(self.ds.get(keyword, "") or "")

    def integer(self, keyword: str) -> int | None:
        return to_int(self.ds.get(keyword))

    def strings(self, keyword: str) -> list[str]:
        raw = self.ds.get(keyword)
        return [raw] if isinstance(raw, str) else [str(v) for v in (raw or [])]

    def meta(self, keyword: str) -> str:
        return str(getattr(getattr(self.ds, "file_meta", None), keyword, "") or "")

    def fallback_fields(self) -> dict[str, Any]:
        return {k: self.ds.get(k) for k in FALLBACK_KEYWORDS}

    def seg_references(self) -> tuple[list[str], list[str]]:
        ds = self.ds
        series: list[str] = []
        sops: list[str] = []
        for item in ds.get("ReferencedSeriesSequence", []) or []:
            if "SeriesInstanceUID" in item:
                series.append(str(item.SeriesInstanceUID))
            for inst in item.get("ReferencedInstanceSequence", []) or []:
                if "ReferencedSOPInstanceUID" in inst:
                    sops.append(str(inst.ReferencedSOPInstanceUID))
        if sops:  # the per-frame source references repeat these; reading them costs ~1 ms per frame
            return sorted(set(series)), sorted(set(sops))
        for fg in ds.get("PerFrameFunctionalGroupsSequence", []) or []:
            for der in fg.get("DerivationImageSequence", []) or []:
                for src in der.get("SourceImageSequence", []) or []:
                    if "ReferencedSOPInstanceUID" in src:
                        sops.append(str(src.ReferencedSOPInstanceUID))
        return sorted(set(series)), sorted(set(sops))

    def rtstruct_references(self) -> tuple[list[str], list[str], list[str]]:
        return rtstruct_references(self.ds)

    def frames(self) -> Frames:
        return frame_geometry(self.ds)

    def pixel(self, header: InstanceHeader) -> dict[str, Any] | None:
        """Native layout of a classic single-frame image (see :func:`~medseg.io.dicom.fast_walk.pixel_layout`)."""
        ds = self.ds
        head = getattr(ds, "medseg_pixel_head", b"")
        if "PerFrameFunctionalGroupsSequence" in ds or "SharedFunctionalGroupsSequence" in ds or not head:
            return None
        where = element_header(head, header.transfer_syntax)
        if where is None or header.rows is None or header.cols is None:
            return None
        try:
            return pixel_layout(
                header.transfer_syntax,
                header.n_frames,
                header.rows,
                header.cols,
                to_int(ds.get("BitsAllocated")),
                to_int(ds.get("BitsStored")),
                to_int(ds.get("PixelRepresentation")),
                str(ds.get("PhotometricInterpretation", "") or ""),
                float(ds.get("RescaleSlope", 1.0) or 1.0),
                float(ds.get("RescaleIntercept", 0.0) or 0.0),
                int(ds.medseg_pixel_pos) + where[0],
                where[1],
            )
        except (TypeError, ValueError):
            return None


def _int_text(value: Any) -> int | None:
    if value is None or value == "" or isinstance(value, list):
        return None
    try:
        f = float(value)
    except ValueError:
        return None
    return int(f) if f.is_integer() else None


def _floats_text(value: Any, n: int) -> list[float] | None:
    if not isinstance(value, list) or len(value) != n:
        return None
    try:
        return [float(v) for v in value]
    except ValueError:
        return None


#: keyword -> field of :func:`~medseg.io.dicom.fast_walk.scan_file` (single-valued ones: several values decline)
_SINGLE = {
    "SOPClassUID": "sop_class",
    "SOPInstanceUID": "sop_uid",
    "SeriesInstanceUID": "series_uid",
    "StudyInstanceUID": "study_uid",
    "PatientID": "patient_id",
    "Modality": "modality",
    "SeriesDescription": "description",
    "Manufacturer": "manufacturer",
    "ManufacturerModelName": "model_name",
    "ProtocolName": "protocol",
    "FrameOfReferenceUID": "for_uid",
    "PhotometricInterpretation": "photometric",
    "RescaleSlope": "slope",
    "RescaleIntercept": "intercept",
    "SpecificCharacterSet": "charset",
    "MediaStorageSOPClassUID": "media_class",
}
_FIELDS = {
    **_SINGLE,
    "TransferSyntaxUID": "transfer_syntax",
    "ImageType": "image_type",
    "SeriesNumber": "series_number",
    "Rows": "rows",
    "Columns": "cols",
    "SamplesPerPixel": "samples",
    "NumberOfFrames": "n_frames",
}
_SINGLE_FIELDS = tuple(_SINGLE.values())


class WalkTags:
    """Tags of :func:`~medseg.io.dicom.fast_walk.scan_file` fields; raises ``Decline`` where pydicom must decide."""

    __slots__ = ("f",)

    def __init__(self, fields: dict[str, Any]) -> None:
        f = fields
        if list in set(map(type, map(f.get, _SINGLE_FIELDS))) or "2022" in str(f.get("charset", "")):
            raise Decline("several values / ISO 2022 text")
        if not f.get("sop_uid") or not f.get("series_uid") or f.get("media_class") == DICOMDIR_CLASS:
            raise Decline("blank UIDs / DICOMDIR")
        self.f = f

    def text(self, keyword: str) -> str:
        return self.f.get(_FIELDS[keyword], "")

    def integer(self, keyword: str) -> int | None:
        value = self.f.get(_FIELDS[keyword])
        return value if isinstance(value, int) else _int_text(value)

    def strings(self, keyword: str) -> list[str]:
        raw = self.f.get(_FIELDS[keyword])
        return [raw] if isinstance(raw, str) else list(raw or [])

    def meta(self, keyword: str) -> str:
        return self.text(keyword)

    def fallback_fields(self) -> dict[str, Any]:
        raise Decline("stand-in UIDs")  # never reached: blank UIDs decline in __init__

    def seg_references(self) -> tuple[list[str], list[str]]:
        series: set[str] = set()
        sops: set[str] = set()
        for item in self.f.get("ref_series") or []:
            if REF_SERIES_UID in item:
                series.add(item[REF_SERIES_UID][0])
            for inst in item.get(REF_INSTANCES) or []:
                if REF_SOP_UID in inst:
                    sops.add(inst[REF_SOP_UID][0])
        if not sops:  # references only in the per-frame derivation sequences: pydicom reads those
            raise Decline("SEG references per frame")
        return sorted(series), sorted(sops)

    def rtstruct_references(self) -> tuple[list[str], list[str], list[str]]:
        raise Decline("RTSTRUCT")

    def frames(self) -> Frames:
        f = self.f
        if (_int_text(f.get("n_frames")) or 1) != 1:
            raise Decline("several frames")
        return [{
            "ipp": _floats_text(f.get("ipp"), 3),
            "iop": _floats_text(f.get("iop"), 6),
            "spacing": _floats_text(f.get("spacing"), 2),
        }]

    def pixel(self, header: InstanceHeader) -> dict[str, Any] | None:
        f = self.f
        try:
            slope = float(f.get("slope") or 1.0) or 1.0
            intercept = float(f.get("intercept") or 0.0)
        except ValueError as exc:
            raise Decline("rescale values") from exc
        assert header.rows is not None and header.cols is not None  # an image has both (describe checked)
        return pixel_layout(
            header.transfer_syntax, 1, header.rows, header.cols, f.get("bits_allocated"), f.get("bits_stored"),
            f.get("pixel_representation"), f.get("photometric", ""), slope, intercept,
            f["pixel_offset"], f["pixel_length"],
        )
