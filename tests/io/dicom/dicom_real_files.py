"""The real DICOM files the fast-path tests compare with pydicom (tests/io/dicom/test_fast_walk.py,
test_frame_groups.py, test_seg_scan.py), and the frame table in a comparable form."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pydicom

REAL = ("dicom2nifti", "pydicom-data", "dicom-edge-cases", "tcia-brain-tumor-progression", "rt-utils", "dcmqi-seg")


def real_files(real_data: Path) -> list[Path]:
    return sorted(p for d in REAL for p in (real_data / d).rglob("*") if p.is_file())


def normalised(table: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    return [
        tuple(None if v is None else int(v) if i == 3 else tuple(float(x) for x in v) for i, v in enumerate(row))
        for row in table
    ]


def seg_files(real_data: Path) -> list[Path]:
    out = []
    for p in real_files(real_data) + sorted((real_data / "highdicom-testfiles").rglob("*.dcm")):
        try:
            ds = pydicom.dcmread(p, stop_before_pixels=True)
        except Exception:  # noqa: BLE001 - not DICOM
            continue
        if ds.get("SOPClassUID") == "1.2.840.10008.5.1.4.1.1.66.4":
            out.append(p)
    return out
