"""Stand-in UIDs for image files whose SOPInstanceUID / SeriesInstanceUID an anonymiser blanked.

GDCM (SimpleITK) and dcm2niix group such files by what the slices of one acquisition share; so do
we. The fallback series key is the file's folder, the study fields (StudyInstanceUID, StudyID,
StudyDate, PatientID), FrameOfReferenceUID, the orientation (rounded to 1e-3), the pixel spacing,
the matrix size, SeriesNumber (AcquisitionNumber where it is blank: some scanners give every slice
its own acquisition number) and ImageType. A blank SeriesInstanceUID becomes
``nouid_<keyed hash of that key>``, a blank SOPInstanceUID ``nouid_<keyed hash of the path>``: keyed
with the de-identification key like every other pseudonym, so they are stable from run to run and
do not reveal the folder. Stacks are then assembled and validated as for any series
(:mod:`medseg.ingest.stacks`); the series row records reason ``missing_uids`` as a warning.
"""

from __future__ import annotations

import json
from typing import Any

from medseg.deid import keyed_hash

PREFIX = "nouid_"
#: header attributes of the fallback series key
FALLBACK_KEYWORDS = ("StudyInstanceUID", "StudyID", "StudyDate", "PatientID", "FrameOfReferenceUID",
                     "ImageOrientationPatient", "PixelSpacing", "Rows", "Columns", "SeriesNumber",
                     "AcquisitionNumber", "ImageType")


def _rounded(value: Any, digits: int) -> list[float] | None:
    try:
        return [round(float(v), digits) for v in value]
    except (TypeError, ValueError):
        return None


def fallback_series_key(fields: dict[str, Any]) -> str:
    """The grouping key (JSON text) of one file's header ``fields`` (DICOM keywords, plus ``folder``)."""
    image_type = fields.get("ImageType")
    key = {
        "folder": str(fields.get("folder", "")),
        "study": [str(fields.get(k, "") or "") for k in ("StudyInstanceUID", "StudyID", "StudyDate", "PatientID")],
        "for": str(fields.get("FrameOfReferenceUID", "") or ""),
        "iop": _rounded(fields.get("ImageOrientationPatient"), 3),
        "spacing": _rounded(fields.get("PixelSpacing"), 4),
        "matrix": [fields.get("Rows"), fields.get("Columns")],
        # AcquisitionNumber only without a SeriesNumber: some scanners number every slice's acquisition
        "number": str(fields.get("SeriesNumber", "") or "") or "acq:" + str(fields.get("AcquisitionNumber", "") or ""),
        "image_type": [image_type] if isinstance(image_type, str) else [str(v) for v in (image_type or [])],
    }
    return json.dumps(key, sort_keys=True, default=str)


def fallback_uids(secret: str, fields: dict[str, Any], path: str, sop_uid: str, series_uid: str) -> tuple[str, str]:
    """``(sop_uid, series_uid)`` with each blank one replaced by its stand-in (see module doc)."""
    if not series_uid:
        series_uid = keyed_hash(secret, "series:" + fallback_series_key(fields), prefix=PREFIX, length=32)
    if not sop_uid:
        sop_uid = keyed_hash(secret, "instance:" + path, prefix=PREFIX, length=32)
    return sop_uid, series_uid


def fallback_message(path: str, sop_blank: bool, series_blank: bool) -> str:
    blank = " and ".join(n for n, b in (("SOPInstanceUID", sop_blank), ("SeriesInstanceUID", series_blank)) if b)
    return (
        f"{path} ...: {blank} blank (anonymised export?); slices grouped by folder, study, frame of reference, "
        "orientation, spacing, series/acquisition number and image type. DICOM SEG written for this case "
        "cannot reference its source instances"
    )
