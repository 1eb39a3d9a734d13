"""Where each frame of a multi-frame file lies (medseg.io.dicom.frame_groups): the fast functional-group
scan gives the frame table pydicom gives, on every real multi-frame file."""

from __future__ import annotations

from pathlib import Path

import pydicom
from dicom_real_files import normalised as _normalised
from dicom_real_files import real_files as _files

from medseg.io.dicom.frame_groups import dataset_frame_table, scan_frame_groups


def test_functional_group_scan_equals_pydicom_on_real_multiframe_files(real_data: Path) -> None:
    checked = 0
    for p in _files(real_data) + sorted((real_data / "highdicom-testfiles").rglob("*.dcm")):
        try:
            ds = pydicom.dcmread(p, stop_before_pixels=True)
        except Exception:  # noqa: BLE001 - not DICOM
            continue
        n_frames = int(ds.get("NumberOfFrames", 1) or 1)
        if "PerFrameFunctionalGroupsSequence" not in ds:
            continue
        fast = scan_frame_groups(str(p), n_frames)
        if fast is None:
            continue
        assert _normalised(fast) == _normalised(dataset_frame_table(ds, n_frames)), p
        checked += 1
    assert checked >= 20
