"""The typed instance header (medseg.io.dicom.header): kinds from the SOP class or the modality.

Its two tag sources are tested in test_header_sources.py, the layered readers in test_read.py."""

from __future__ import annotations

from medseg.io.dicom.header import InstanceKind, instance_kind


def test_kind_comes_from_the_sop_class_or_the_modality() -> None:
    assert instance_kind("1.2.840.10008.5.1.4.1.1.66.4", "") is InstanceKind.SEG
    assert instance_kind("", "SEG") is InstanceKind.SEG
    assert instance_kind("1.2.840.10008.5.1.4.1.1.481.3", "") is InstanceKind.RTSTRUCT
    assert instance_kind("1.2.840.10008.5.1.4.1.1.88.22", "SR") is InstanceKind.OTHER
    assert instance_kind("1.2.840.10008.5.1.4.1.1.2", "CT") is InstanceKind.IMAGE
