"""DICOM I/O: typed instance headers, the header walks, pixel reading, SEG / RTSTRUCT readers and the SEG writer.

Modules: ``header`` (:class:`~medseg.io.dicom.header.InstanceHeader` and the one describe function),
``header_sources`` (the two tag sources it reads: a pydicom Dataset, the fast walk's fields),
``read`` (one file's header, problems classified into quarantine reasons), ``fast_walk`` (the
``struct`` walk of little-endian files, with the private C walk ``_walk`` behind it), ``frame_groups``
(where each frame of a multi-frame file lies), ``uid_fallback`` (stand-in UIDs of anonymised files),
``frame`` (one 2D frame), ``pixels`` (a stack's pixels), ``seg`` / ``seg_scan`` (DICOM SEG -> labels),
``rtstruct`` with ``polygon`` (RTSTRUCT contours -> labels), ``seg_writer`` (a label map -> DICOM SEG),
``seg_check`` (a written SEG read back and checked against its source series), ``seg_codes`` (segment codes).
Import from the submodules; this package imports nothing heavy. It imports nothing from
:mod:`medseg.ingest` (quarantine reasons live in :mod:`medseg.io.reasons`).
"""
