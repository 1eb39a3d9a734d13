"""One file's typed header (medseg.io.dicom.read): the fast walk first, pydicom behind it (same
result), and read problems classified into quarantine reasons."""

from __future__ import annotations

import errno
from pathlib import Path

import numpy as np
import pytest
from dicom_factory import ct_slices, seg_for, write

from medseg.io.dicom.header import InstanceKind
from medseg.io.dicom.read import quarantine_reason, read_instance
from medseg.io.reasons import IngestError, Reason

SECRET = "typed-header-secret"


def test_seg_header_lists_its_references(tmp_path: Path) -> None:
    dss, _ = ct_slices(n=3)
    write(dss, tmp_path / "ct")
    masks = np.zeros((3, int(dss[0].Rows), int(dss[0].Columns), 1), dtype=bool)
    masks[:, 1:3, 1:3] = True
    (seg_path,) = write([seg_for(dss, masks)], tmp_path / "seg")
    header = read_instance(str(seg_path), SECRET)
    assert header.kind is InstanceKind.SEG
    assert header.ref_sop_uids == sorted(str(ds.SOPInstanceUID) for ds in dss)
    assert header == read_instance(str(seg_path), SECRET, fast=False)
    assert "frames" not in header.as_dict()


def test_read_errors_become_quarantine_reasons(tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(IngestError) as info:
        read_instance(str(text), SECRET)
    assert info.value.reason is Reason.NOT_DICOM
    assert quarantine_reason("p", info.value)[0] is Reason.NOT_DICOM
    denied = PermissionError(errno.EACCES, "Permission denied", "p")
    assert quarantine_reason("p", denied)[0] is Reason.IO_ERROR
    assert quarantine_reason("p", ValueError("bad"))[0] is Reason.UNREADABLE
