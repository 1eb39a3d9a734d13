"""Read the header of one file into a small, de-identified, JSON-serialisable dict.

This runs on Dask workers (one batch of files per task), so it returns plain dicts and never
pixel data. DICOM files are read by :func:`medseg.io.dicom.read.read_instance` (identifying
attributes are replaced by keyed hashes there, so they never leave the worker); this module adds the
ingest-specific files and the file's own fields.

Header dict (``status == "ok"``)::

    path, size, mtime_ns, status, kind ("image" | "seg" | "rtstruct"), sop_class, sop_uid, series_uid,
    study_key, patient_key, modality, description, manufacturer, model_name, protocol, series_number,
    for_uid, image_type,
    rows, cols, samples, transfer_syntax, n_frames,
    frames: [{"ipp": [x, y, z] | None, "iop": [6] | None, "spacing": [row, col] | None}, ...]
    (image only), for SEG: ref_series_uids, ref_sop_uids, for RTSTRUCT also ref_for_uids
    (:meth:`medseg.io.dicom.header.InstanceHeader.as_dict`)

NIfTI/NRRD files (by suffix) give ``kind == "volume"`` with format, shape, n_channels, dtype and
geometry; an MSD / nnU-Net ``dataset.json`` gives ``kind == "dataset"`` with name, modality,
channels, labels and file_ending (see :mod:`medseg.io.volume_files`).

``status == "quarantined"`` dicts carry ``reason`` and ``message`` instead.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from medseg.io.dicom.read import quarantine_reason, read_instance
from medseg.io.volume_files import DATASET_JSON, read_dataset_json, read_volume_header, volume_suffix


def read_header(path: Path | str, secret: str, size: int = -1, mtime_ns: int = -1, fast: bool = True) -> dict[str, Any]:
    """Read one file's header; never raises (problems become a ``quarantined`` dict).

    Args:
        path: File to read (any name, any extension).
        secret: De-identification key for patient/study pseudonyms.
        size: File size in bytes (recorded as given; -1 = stat it).
        mtime_ns: Modification time (ns) as given; -1 = stat it.
        fast: Try :mod:`medseg.io.dicom.fast_walk` first (same result, ~5x faster on classic images).
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
        base.update(read_instance(spath, secret, fast).as_dict())
        return base
    except Exception as exc:  # noqa: BLE001 - any parser failure quarantines the file
        reason, message = quarantine_reason(spath, exc)
        return {**base, "status": "quarantined", "reason": reason.value, "message": message}


def read_header_batch(items: list[tuple[str, int, int]], secret: str) -> list[dict[str, Any]]:
    """Read the headers of ``(path, size, mtime_ns)`` items (one Dask task)."""
    return [read_header(path, secret, size, mtime) for path, size, mtime in items]
