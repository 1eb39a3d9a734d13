"""Quarantine reason codes and the exception that carries one.

Every file or series that does not become (part of) a case gets exactly one of these codes in the
catalog's ``quarantine`` table, with a message naming the file and what to do about it.
"""

from __future__ import annotations

from enum import StrEnum


class Reason(StrEnum):
    """Why a file or series was not ingested."""

    NOT_DICOM = "not_dicom"  # no DICOM header could be parsed
    IO_ERROR = "io_error"  # the file could not be read (permission, I/O error): re-read on the next run
    UNREADABLE_PATH = "unreadable_path"  # a folder that cannot be listed / an entry that cannot be examined
    DANGLING_LINK = "dangling_link"  # symbolic link whose target does not exist
    SPECIAL_FILE = "special_file"  # FIFO, socket or device file (never opened)
    BAD_FILE_NAME = "bad_file_name"  # file or folder name that is not valid UTF-8
    UNREADABLE = "unreadable_header"  # DICOM, but the header is malformed
    MISSING_UIDS = "missing_uids"  # no SOPInstanceUID / SeriesInstanceUID
    UNSUPPORTED_OBJECT = "unsupported_object"  # SR, RTPLAN, RTDOSE, annotations ... (no image)
    NO_GEOMETRY = "no_geometry"  # image without ImagePositionPatient/Orientation/PixelSpacing
    COLOR_IMAGE = "color_image"  # SamplesPerPixel > 1 (RGB/YBR): not a scalar volume
    DUPLICATE_INSTANCE = "duplicate_instance"  # same SOPInstanceUID as another file (kept that one)
    DUPLICATE_SERIES = "duplicate_series"  # another copy of an already kept stack (same positions)
    DUPLICATE_POSITIONS = "duplicate_positions"  # several slices at one position (4D, not a volume)
    TOO_FEW_SLICES = "too_few_slices"  # fewer than MIN_SLICES slices
    SLICE_GAP = "slice_gap"  # inconsistent slice increment (missing slice ...)
    IRREGULAR_POSITIONS = "irregular_positions"  # slice positions not on a straight line
    INCONSISTENT_ORIENTATION = "inconsistent_orientation"  # orientations differ within a series/stack
    GANTRY_TILT = "gantry_tilt"  # slice step not parallel to the slice normal
    PIXEL_ERROR = "pixel_error"  # pixel data cannot be decoded / has the wrong size
    SEG_UNREFERENCED = "seg_unreferenced"  # SEG whose referenced image series is not ingestible
    SEG_MISMATCH = "seg_mismatch"  # SEG frames do not fall on the referenced image grid
    SEG_ERROR = "seg_error"  # SEG cannot be read
    RTSTRUCT_UNREFERENCED = "rtstruct_unreferenced"  # RTSTRUCT whose referenced image series is not ingestible
    RTSTRUCT_MISMATCH = "rtstruct_mismatch"  # RTSTRUCT contours off the referenced image grid
    RTSTRUCT_ERROR = "rtstruct_error"  # RTSTRUCT cannot be read
    LABEL_UNMATCHED = "label_unmatched"  # mask series / label file with no image (series) to label
    LABEL_MISMATCH = "label_mismatch"  # label file whose shape/affine differs from its image
    LABEL_AMBIGUOUS = "label_ambiguous"  # another label file of the same image was preferred
    EXTERNAL_DATA = "external_data"  # detached NRRD data file outside the source tree / not a regular file
    VOLUME_UNREADABLE = "volume_unreadable"  # NIfTI/NRRD file that cannot be read / is not a 3D volume
    EXTRA_CHANNEL = "extra_channel"  # non-first channel of a multi-channel dataset case (single-channel models)
    MISSING_CHANNEL = "missing_channel"  # study lacks a series for a channel of ingest.channels (no case built)
    CHANNEL_AMBIGUOUS = "channel_ambiguous"  # several series of a study match one ingest.channels rule
    LABEL_NOT_MASK = "label_not_mask"  # "mask" series whose values are not small label integers
    WRITE_ERROR = "write_error"  # volume store could not be written
    INTERNAL_ERROR = "internal_error"  # unexpected exception (bug): message has the traceback tail


#: Reasons that may not hold on the next try: files quarantined for these are read again by every run.
TRANSIENT_REASONS = frozenset({Reason.IO_ERROR})


class IngestError(Exception):
    """A file or series cannot be ingested; carries a :class:`Reason`, a readable message and, when one
    file of several is to blame, that file's ``path``."""

    def __init__(self, reason: Reason, message: str, path: str | None = None) -> None:
        super().__init__(f"[{reason.value}] {message}")
        self.reason = reason
        self.message = message
        self.path = path
