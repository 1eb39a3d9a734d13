"""The two tag sources of the typed header (medseg.io.dicom.header_sources): a pydicom Dataset and the
fast walk's fields describe a file alike, and the walk source declines what only pydicom can decide."""

from __future__ import annotations

from pathlib import Path

import pytest
from dicom_factory import ct_slices, write

from medseg.io.dicom.fast_walk import Decline, scan_file
from medseg.io.dicom.header import InstanceHeader, InstanceKind, describe
from medseg.io.dicom.header_sources import DatasetTags, WalkTags
from medseg.io.dicom.read import describe_fields, read_dataset, read_instance

SECRET = "typed-header-secret"


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


def test_both_tag_sources_read_the_acquisition_descriptors(tmp_path: Path) -> None:
    """Manufacturer, ManufacturerModelName and ProtocolName (the drift report's categories) come from the
    fast walk itself, not from a fallback to pydicom, and equal what pydicom reads."""
    dss, _ = ct_slices(n=1)
    dss[0].ManufacturerModelName = "Scanner 9000 "  # padded to even length: the pad is not part of the value
    dss[0].ProtocolName = "ABD PORTAL"
    (path,) = write(dss, tmp_path)
    fields = scan_file(str(path))
    assert fields is not None
    assert (fields["manufacturer"], fields["model_name"], fields["protocol"]) == (
        "medseg-tests", "Scanner 9000", "ABD PORTAL")
    fast = describe(WalkTags(fields), str(path), SECRET)
    slow = describe(DatasetTags(read_dataset(path)), path, SECRET)
    assert fast == slow
    assert (fast.manufacturer, fast.model_name, fast.protocol) == ("medseg-tests", "Scanner 9000", "ABD PORTAL")
    assert {k: fast.as_dict()[k] for k in ("manufacturer", "model_name", "protocol")} == {
        "manufacturer": "medseg-tests", "model_name": "Scanner 9000", "protocol": "ABD PORTAL"}
    with pytest.raises(Decline):  # several values in a single-valued descriptor: pydicom decides
        WalkTags({**fields, "protocol": ["A", "B"]})
    del dss[0].ProtocolName
    (bare,) = write(dss, tmp_path / "bare")
    assert read_instance(str(bare), SECRET).protocol == read_instance(str(bare), SECRET, fast=False).protocol == ""
