"""The typed instance header: one describe() for both tag sources, kinds from the SOP class, readers layered."""

from __future__ import annotations

import errno
from pathlib import Path

import numpy as np
import pytest
from dicom_factory import ct_slices, seg_for, write

from medseg.io.dicom.fast_walk import Decline, scan_file
from medseg.io.dicom.header import InstanceHeader, InstanceKind, describe, instance_kind
from medseg.io.dicom.header_sources import DatasetTags, WalkTags
from medseg.io.dicom.read import describe_fields, quarantine_reason, read_dataset, read_instance
from medseg.io.reasons import IngestError, Reason

SECRET = "typed-header-secret"


def test_kind_comes_from_the_sop_class_or_the_modality() -> None:
    assert instance_kind("1.2.840.10008.5.1.4.1.1.66.4", "") is InstanceKind.SEG
    assert instance_kind("", "SEG") is InstanceKind.SEG
    assert instance_kind("1.2.840.10008.5.1.4.1.1.481.3", "") is InstanceKind.RTSTRUCT
    assert instance_kind("1.2.840.10008.5.1.4.1.1.88.22", "SR") is InstanceKind.OTHER
    assert instance_kind("1.2.840.10008.5.1.4.1.1.2", "CT") is InstanceKind.IMAGE


def test_both_tag_sources_describe_an_image_alike(tmp_path: Path) -> None:
    dss, _ = ct_slices(n=1)
    (path,) = write(dss, tmp_path)
    fields = scan_file(str(path))
    assert fields is not None
    fast = describe(WalkTags(fields), str(path), SECRET)
    slow = describe(DatasetTags(read_dataset(path)), path, SECRET)
    assert isinstance(fast, InstanceHeader) and fast.kind is InstanceKind.IMAGE
    assert fast == slow
    d = fast.as_dict()
    assert d["kind"] == "image" and d["status"] == "ok" and d["pixel"] is not None
    assert "ref_sop_uids" not in d and "uid_fallback" not in d
    assert read_instance(str(path), SECRET) == read_instance(str(path), SECRET, fast=False) == fast


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


def test_the_walk_source_declines_what_pydicom_must_decide(tmp_path: Path) -> None:
    dss, _ = ct_slices(n=1)
    (path,) = write(dss, tmp_path)
    fields = scan_file(str(path))
    assert fields is not None
    with pytest.raises(Decline):
        WalkTags({**fields, "sop_uid": ""})
    with pytest.raises(Decline):
        WalkTags({**fields, "modality": ["CT", "MR"]})
    assert describe_fields({**fields, "n_frames": "2"}, SECRET) is None


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
