"""Read the header of one DICOM file: the fast walk first, pydicom for what it declines; problems classified.

The three readers are layered: :func:`read_instance` tries :func:`~medseg.io.dicom.fast_walk.scan_file`
(the ``struct`` walk, with the C walk behind it) and describes its fields
(:class:`~medseg.io.dicom.header_sources.WalkTags`); anything the walk or that source declines is read
by pydicom (:class:`~medseg.io.dicom.header_sources.DatasetTags`). Both go through the one
:func:`~medseg.io.dicom.header.describe`, so both give the same :class:`InstanceHeader`.
:func:`quarantine_reason` turns what reading raised into a quarantine reason and message.
"""

from __future__ import annotations

import errno
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medseg.io.dicom.fast_walk import Decline, scan_file
from medseg.io.dicom.header import InstanceHeader, describe
from medseg.io.dicom.header_sources import DatasetTags, WalkTags
from medseg.io.reasons import IngestError, Reason

if TYPE_CHECKING:  # pydicom is imported on first use: the fast path reads most archives without it
    from pydicom.dataset import Dataset

#: errno values of a read that may succeed later (permission fixed, storage back): quarantined ``io_error``
TRANSIENT_ERRNOS = frozenset({errno.EACCES, errno.EPERM, errno.EIO, errno.ENOENT, errno.ESTALE, errno.EAGAIN,
                              errno.EBUSY, errno.ETIMEDOUT, errno.ENXIO})


def read_dataset(path: Path) -> Dataset:
    """The pydicom Dataset of ``path`` without pixel data (also a file without preamble / file meta)."""
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


def describe_fields(fields: dict[str, Any], secret: str, path: str = "") -> InstanceHeader | None:
    """The header of :func:`~medseg.io.dicom.fast_walk.scan_file` fields of ``path``; None = let pydicom decide."""
    try:
        return describe(WalkTags(fields), path, secret)
    except (Decline, IngestError):
        return None


def describe_with_pydicom(path: Path, secret: str) -> InstanceHeader:
    """The header read by pydicom (files the fast path declined); a non-DICOM file raises ``not_dicom``."""
    from pydicom.errors import InvalidDicomError

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return describe(DatasetTags(read_dataset(path)), path, secret)
        except InvalidDicomError as exc:
            raise IngestError(
                Reason.NOT_DICOM, f"{path}: not a DICOM file ({exc}); ignore it or remove it from the source folder"
            ) from exc


def read_instance(path: str, secret: str, fast: bool = True) -> InstanceHeader:
    """The header of one DICOM file.

    Args:
        path: File to read (any name, any extension).
        secret: De-identification key for patient/study pseudonyms.
        fast: Try the fast walk first (same result, ~5x faster on classic images).

    Raises:
        IngestError: not DICOM, or an object medseg cannot use (its reason says which).
        OSError: the file cannot be read; other exceptions: a malformed header (see :func:`quarantine_reason`).
    """
    if fast:
        scanned = scan_file(path)
        header = describe_fields(scanned, secret, path) if scanned is not None else None
        if header is not None:
            return header
    return describe_with_pydicom(Path(path), secret)


def quarantine_reason(path: str, exc: Exception) -> tuple[Reason, str]:
    """The quarantine reason and message of what reading ``path`` raised."""
    if isinstance(exc, IngestError):
        return exc.reason, exc.message
    if isinstance(exc, OSError) and exc.errno in TRANSIENT_ERRNOS:
        return Reason.IO_ERROR, (
            f"{path}: cannot be read ({exc.strerror or exc}); fix the file's permissions or storage, "
            "the next ingest reads it again"
        )
    return Reason.UNREADABLE, (
        f"{path}: DICOM header cannot be parsed ({type(exc).__name__}: {exc}); re-export the file from the PACS"
    )
