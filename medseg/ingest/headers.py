"""Read the header of one file into a small, de-identified, JSON-serialisable dict.

This runs on Dask workers (one batch of files per task), so it returns plain dicts and never
pixel data. Identifying attributes (PatientID, StudyInstanceUID) are replaced by keyed hashes
*here*, so they never leave the worker. SeriesInstanceUID / SOPInstanceUID are kept: the catalog
needs them to resolve DICOM SEG references and to write DICOM SEG back later.

Header dict (``status == "ok"``)::

    path, size, mtime_ns, status, kind ("image" | "seg" | "rtstruct"), sop_class, sop_uid, series_uid,
    study_key, patient_key, modality, description, series_number, for_uid, image_type,
    rows, cols, samples, transfer_syntax, n_frames,
    frames: [{"ipp": [x, y, z] | None, "iop": [6] | None, "spacing": [row, col] | None}, ...]
    (image only), for SEG: ref_series_uids, ref_sop_uids, for RTSTRUCT also ref_for_uids

NIfTI/NRRD files (by suffix) give ``kind == "volume"`` with format, shape, n_channels, dtype and
geometry; an MSD / nnU-Net ``dataset.json`` gives ``kind == "dataset"`` with name, modality,
channels, labels and file_ending (see :mod:`medseg.ingest.volume_files`).

``status == "quarantined"`` dicts carry ``reason`` and ``message`` instead.
"""

from __future__ import annotations

import errno
import functools
import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medseg.deid import keyed_hash
from medseg.ingest.fast_header import (
    REF_INSTANCES,
    REF_SERIES_UID,
    REF_SOP_UID,
    SEG_SOP_CLASSES,
    element_header,
    pixel_layout,
    scan_file,
)
from medseg.ingest.reasons import IngestError, Reason
from medseg.ingest.rtstruct import RTSTRUCT_SOP_CLASS, rtstruct_references
from medseg.ingest.uid_fallback import fallback_message, fallback_uids
from medseg.io.volume_files import DATASET_JSON, read_dataset_json, read_volume_header, volume_suffix

if TYPE_CHECKING:  # pydicom is imported on first use: the fast path reads most archives without it
    from pydicom.dataset import Dataset

#: errno values of a read that may succeed later (permission fixed, storage back): quarantined ``io_error``
_TRANSIENT_ERRNOS = frozenset({errno.EACCES, errno.EPERM, errno.EIO, errno.ENOENT, errno.ESTALE, errno.EAGAIN,
                               errno.EBUSY, errno.ETIMEDOUT, errno.ENXIO})
#: header attributes of the fallback series key (see :mod:`medseg.ingest.uid_fallback`)
_FALLBACK_KEYWORDS = ("StudyInstanceUID", "StudyID", "StudyDate", "PatientID", "FrameOfReferenceUID",
                      "ImageOrientationPatient", "PixelSpacing", "Rows", "Columns", "SeriesNumber",
                      "AcquisitionNumber", "ImageType")
_NON_IMAGE_MODALITIES = {"SR", "RTSTRUCT", "RTPLAN", "RTDOSE", "RTRECORD", "PR", "KO", "ANN", "REG", "DOC"}


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


def frame_geometry(ds: Dataset) -> list[dict[str, list[float] | None]]:
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


def _seg_references(ds: Dataset) -> tuple[list[str], list[str]]:
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


def _read_dataset(path: Path) -> Dataset:
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        with open(path, "rb") as fh:
            ds = pydicom.dcmread(fh, stop_before_pixels=True)
            ds.medseg_pixel_head = fh.read(12)  # PixelData element header (the reader stops right before it)
            ds.medseg_pixel_pos = fh.tell() - len(ds.medseg_pixel_head)
        return ds
    except InvalidDicomError:
        # A DICOM file without preamble/file meta still starts with a group 0x0008 tag.
        with open(path, "rb") as fh:
            head = fh.read(4)
        if head[:2] not in (b"\x08\x00", b"\x00\x08"):
            raise
        ds = pydicom.dcmread(str(path), stop_before_pixels=True, force=True)
        if "SOPClassUID" not in ds and "SeriesInstanceUID" not in ds:
            raise
        return ds


def read_header(path: Path | str, secret: str, size: int = -1, mtime_ns: int = -1, fast: bool = True) -> dict[str, Any]:
    """Read one file's header; never raises (problems become a ``quarantined`` dict).

    Args:
        path: File to read (any name, any extension).
        secret: De-identification key for patient/study pseudonyms.
        size: File size in bytes (recorded as given; -1 = stat it).
        mtime_ns: Modification time (ns) as given; -1 = stat it.
        fast: Try :mod:`medseg.ingest.fast_header` first (same result, ~5x faster on classic images).
    """
    spath = os.fspath(path)
    base: dict[str, Any] = {"path": spath, "size": size, "mtime_ns": mtime_ns}
    try:
        if size < 0 or mtime_ns < 0:
            st = os.stat(spath)
            base["size"], base["mtime_ns"] = st.st_size, st.st_mtime_ns
        if os.path.basename(spath) == DATASET_JSON:
            return {**base, "status": "ok", "kind": "dataset", **read_dataset_json(Path(spath))}
        if volume_suffix(spath):
            return {**base, "status": "ok", "kind": "volume", **read_volume_header(Path(spath))}
        if fast:
            scanned = scan_file(spath)
            described = _describe_fast(scanned, secret) if scanned is not None else None
            if described is not None:
                base.update(described)
                return base
        return {**base, **_describe_with_pydicom(Path(spath), secret)}
    except IngestError as exc:
        return {**base, "status": "quarantined", "reason": exc.reason.value, "message": exc.message}
    except OSError as exc:
        if exc.errno not in _TRANSIENT_ERRNOS:
            return _unparsable(base, spath, exc)
        return {
            **base,
            "status": "quarantined",
            "reason": Reason.IO_ERROR.value,
            "message": f"{spath}: cannot be read ({exc.strerror or exc}); fix the file's permissions or storage, "
            "the next ingest reads it again",
        }
    except Exception as exc:  # noqa: BLE001 - any parser failure quarantines the file
        return _unparsable(base, spath, exc)


def _unparsable(base: dict[str, Any], spath: str, exc: Exception) -> dict[str, Any]:
    return {
        **base,
        "status": "quarantined",
        "reason": Reason.UNREADABLE.value,
        "message": f"{spath}: DICOM header cannot be parsed ({type(exc).__name__}: {exc}); "
        "re-export the file from the PACS",
    }


def _describe_with_pydicom(p: Path, secret: str) -> dict[str, Any]:
    """Header fields read by pydicom (files the fast path declined); a non-DICOM file raises ``not_dicom``."""
    from pydicom.errors import InvalidDicomError

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return _describe(_read_dataset(p), p, secret)
        except InvalidDicomError as exc:
            raise IngestError(
                Reason.NOT_DICOM, f"{p}: not a DICOM file ({exc}); ignore it or remove it from the source folder"
            ) from exc


def _describe(ds: Dataset, p: Path, secret: str) -> dict[str, Any]:
    sop_class = str(ds.get("SOPClassUID", "") or "")
    sop_uid = str(ds.get("SOPInstanceUID", "") or "")
    series_uid = str(ds.get("SeriesInstanceUID", "") or "")
    modality = str(ds.get("Modality", "") or "")
    media_class = str(getattr(getattr(ds, "file_meta", None), "MediaStorageSOPClassUID", "") or "")
    if media_class == "1.2.840.10008.1.3.10":  # DICOMDIR: an index of other files, not an image
        raise IngestError(
            Reason.UNSUPPORTED_OBJECT,
            f"{p}: DICOMDIR (media directory index); the files it lists are ingested on their own",
        )
    uid_note = None
    if not sop_uid or not series_uid:
        labels = sop_class in SEG_SOP_CLASSES or sop_class == RTSTRUCT_SOP_CLASS or modality in ("SEG", "RTSTRUCT")
        if labels or not _int(ds.get("Rows")) or not _int(ds.get("Columns")):  # only images are grouped without UIDs
            raise IngestError(
                Reason.MISSING_UIDS,
                f"{p}: DICOM {'label object ' if labels else ''}without SOPInstanceUID/SeriesInstanceUID; "
                "it cannot be grouped into a series or referenced",
            )
        uid_note = fallback_message(str(p), not sop_uid, not series_uid)
        fields = {k: ds.get(k) for k in _FALLBACK_KEYWORDS}
        sop_uid, series_uid = fallback_uids(secret, {**fields, "folder": str(p.parent)}, str(p), sop_uid, series_uid)
    study_uid = str(ds.get("StudyInstanceUID", "") or "")
    patient_id = str(ds.get("PatientID", "") or "")
    try:
        sop_name = _sop_name(sop_class)
    except Exception:  # noqa: BLE001
        sop_name = sop_class
    raw_type = ds.get("ImageType")
    image_type = [raw_type] if isinstance(raw_type, str) else [str(v) for v in (raw_type or [])]
    out: dict[str, Any] = {
        "status": "ok",
        "sop_class": sop_class,
        "sop_name": sop_name,
        "sop_uid": sop_uid,
        "series_uid": series_uid,
        **identity_keys(secret, series_uid, study_uid, patient_id),
        "modality": modality,
        "description": str(ds.get("SeriesDescription", "") or ""),
        "series_number": _int(ds.get("SeriesNumber")),
        "for_uid": str(ds.get("FrameOfReferenceUID", "") or ""),
        "image_type": image_type,
        "rows": _int(ds.get("Rows")),
        "cols": _int(ds.get("Columns")),
        "samples": _int(ds.get("SamplesPerPixel")) or 1,
        "transfer_syntax": str(getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", "") or ""),
        "n_frames": _int(ds.get("NumberOfFrames")) or 1,
    }
    if sop_class in SEG_SOP_CLASSES or modality == "SEG":
        out["kind"] = "seg"
        out["ref_series_uids"], out["ref_sop_uids"] = _seg_references(ds)
        return out
    if sop_class == RTSTRUCT_SOP_CLASS or modality == "RTSTRUCT":
        out["kind"] = "rtstruct"
        out["ref_series_uids"], out["ref_sop_uids"], out["ref_for_uids"] = rtstruct_references(ds)
        return out
    if not out["rows"] or not out["cols"] or modality in _NON_IMAGE_MODALITIES:
        raise IngestError(
            Reason.UNSUPPORTED_OBJECT,
            f"{p}: {sop_name} ({modality or 'no modality'}) "
            + ("is not an image" if modality in _NON_IMAGE_MODALITIES else "has no image matrix (no Rows/Columns)")
            + "; not used by medseg",
        )
    if out["samples"] != 1:
        raise IngestError(
            Reason.COLOR_IMAGE,
            f"{p}: {sop_name} has SamplesPerPixel={out['samples']} "
            f"({ds.get('PhotometricInterpretation', '?')}); only grayscale "
            "volumes can be segmented",
        )
    frames = frame_geometry(ds)
    missing = [k for k in ("ipp", "iop", "spacing") if any(f[k] is None for f in frames)]
    if missing:
        names = {"ipp": "ImagePositionPatient", "iop": "ImageOrientationPatient", "spacing": "PixelSpacing"}
        raise IngestError(
            Reason.NO_GEOMETRY,
            f"{p}: {sop_name} ({modality}) lacks "
            f"{', '.join(names[m] for m in missing)}; it cannot be placed in "
            "patient space (not a cross-sectional volume)",
        )
    out["kind"] = "image"
    out["frames"] = frames
    out["pixel"] = _pixel_from_dataset(ds, out)
    if uid_note is not None:
        out["uid_fallback"] = uid_note
    return out


def _pixel_from_dataset(ds: Dataset, out: dict[str, Any]) -> dict[str, Any] | None:
    """Native pixel layout of a classic single-frame image read by pydicom (see ``fast_header.pixel_layout``)."""
    head = getattr(ds, "medseg_pixel_head", b"")
    if "PerFrameFunctionalGroupsSequence" in ds or "SharedFunctionalGroupsSequence" in ds or not head:
        return None
    where = element_header(head, out["transfer_syntax"])
    if where is None:
        return None
    try:
        return pixel_layout(
            out["transfer_syntax"],
            out["n_frames"],
            out["rows"],
            out["cols"],
            _int(ds.get("BitsAllocated")),
            _int(ds.get("BitsStored")),
            _int(ds.get("PixelRepresentation")),
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


def _describe_fast(f: dict[str, Any], secret: str) -> dict[str, Any] | None:
    """Header dict of a classic image from :func:`scan_file` fields; None = let pydicom decide."""
    single = (
        "sop_class",
        "sop_uid",
        "series_uid",
        "study_uid",
        "patient_id",
        "modality",
        "description",
        "for_uid",
        "photometric",
        "slope",
        "intercept",
        "charset",
        "media_class",
    )
    if any(isinstance(f.get(k), list) for k in single) or "2022" in str(f.get("charset", "")):
        return None
    sop_class, sop_uid, series_uid = f.get("sop_class", ""), f.get("sop_uid", ""), f.get("series_uid", "")
    modality = f.get("modality", "")
    if sop_class in SEG_SOP_CLASSES and sop_uid and series_uid and f.get("media_class") != "1.2.840.10008.1.3.10":
        return _describe_seg_fast(f, secret)
    if (
        not sop_uid
        or not series_uid
        or f.get("media_class") == "1.2.840.10008.1.3.10"
        or sop_class in SEG_SOP_CLASSES
        or sop_class == RTSTRUCT_SOP_CLASS
        or modality in _NON_IMAGE_MODALITIES
        or modality in ("SEG", "RTSTRUCT")
        or not f.get("rows")
        or not f.get("cols")
        or (f.get("samples") or 1) != 1
        or (_int_text(f.get("n_frames")) or 1) != 1
    ):
        return None
    frame = {
        "ipp": _floats_text(f.get("ipp"), 3),
        "iop": _floats_text(f.get("iop"), 6),
        "spacing": _floats_text(f.get("spacing"), 2),
    }
    if any(v is None for v in frame.values()):
        return None
    try:
        sop_name = _sop_name(sop_class)
        slope = float(f.get("slope") or 1.0) or 1.0
        intercept = float(f.get("intercept") or 0.0)
    except Exception:  # noqa: BLE001
        return None
    study_uid, patient_id = f.get("study_uid", ""), f.get("patient_id", "")
    raw_type = f.get("image_type")
    out: dict[str, Any] = {
        "status": "ok",
        "sop_class": sop_class,
        "sop_name": sop_name,
        "sop_uid": sop_uid,
        "series_uid": series_uid,
        **identity_keys(secret, series_uid, study_uid, patient_id),
        "modality": modality,
        "description": f.get("description", ""),
        "series_number": _int_text(f.get("series_number")),
        "for_uid": f.get("for_uid", ""),
        "image_type": [raw_type] if isinstance(raw_type, str) else list(raw_type or []),
        "rows": f["rows"],
        "cols": f["cols"],
        "samples": f.get("samples") or 1,
        "transfer_syntax": f.get("transfer_syntax", ""),
        "n_frames": 1,
        "kind": "image",
        "frames": [frame],
    }
    out["pixel"] = pixel_layout(
        out["transfer_syntax"],
        1,
        out["rows"],
        out["cols"],
        f.get("bits_allocated"),
        f.get("bits_stored"),
        f.get("pixel_representation"),
        f.get("photometric", ""),
        slope,
        intercept,
        f["pixel_offset"],
        f["pixel_length"],
    )
    return out


def _common_fast(f: dict[str, Any], secret: str) -> dict[str, Any]:
    """The header fields every object has, from :func:`scan_file` fields (as :func:`_describe` makes them)."""
    sop_class, series_uid = f.get("sop_class", ""), f.get("series_uid", "")
    raw_type = f.get("image_type")
    return {
        "status": "ok",
        "sop_class": sop_class,
        "sop_name": _sop_name(sop_class),
        "sop_uid": f.get("sop_uid", ""),
        "series_uid": series_uid,
        **identity_keys(secret, series_uid, f.get("study_uid", ""), f.get("patient_id", "")),
        "modality": f.get("modality", ""),
        "description": f.get("description", ""),
        "series_number": _int_text(f.get("series_number")),
        "for_uid": f.get("for_uid", ""),
        "image_type": [raw_type] if isinstance(raw_type, str) else list(raw_type or []),
        "rows": f.get("rows"),
        "cols": f.get("cols"),
        "samples": f.get("samples") or 1,
        "transfer_syntax": f.get("transfer_syntax", ""),
    }


def _describe_seg_fast(f: dict[str, Any], secret: str) -> dict[str, Any] | None:
    """Header dict of a DICOM SEG whose ReferencedSeriesSequence lists its source instances; else None."""
    series: set[str] = set()
    sops: set[str] = set()
    for item in f.get("ref_series") or []:
        if REF_SERIES_UID in item:
            series.add(item[REF_SERIES_UID][0])
        for inst in item.get(REF_INSTANCES) or []:
            if REF_SOP_UID in inst:
                sops.add(inst[REF_SOP_UID][0])
    if not sops:  # references only in the per-frame derivation sequences: pydicom reads those
        return None
    try:
        out = _common_fast(f, secret)
    except Exception:  # noqa: BLE001
        return None
    out.update({"n_frames": _int_text(f.get("n_frames")) or 1, "kind": "seg",
                "ref_series_uids": sorted(series), "ref_sop_uids": sorted(sops)})
    return out


@functools.lru_cache(maxsize=256)
def _sop_name(sop_class: str) -> str:
    import pydicom.uid

    return pydicom.uid.UID(sop_class).name if sop_class else "unknown SOP class"


def _int(value: Any) -> int | None:
    try:
        return int(value) if value is not None and value != "" else None
    except (TypeError, ValueError):
        return None


def read_header_batch(items: list[tuple[str, int, int]], secret: str) -> list[dict[str, Any]]:
    """Read the headers of ``(path, size, mtime_ns)`` items (one Dask task)."""
    return [read_header(path, secret, size, mtime) for path, size, mtime in items]
