"""Tests for medseg.demo.seg_writer: a DICOM SEG that highdicom reads back to the same labels."""

from __future__ import annotations

from pathlib import Path

import highdicom as hd
import numpy as np
import pytest
from pydicom.sr.codedict import codes

from medseg.demo.dicom_series import ENCODINGS, SeriesIdentity, build_ct_slices
from medseg.demo.phantom import LABEL_NAMES
from medseg.demo.seg_writer import build_seg, write_seg
from medseg.geometry import Geometry


def _source(shape=(5, 12, 16)):
    identity = SeriesIdentity(
        patient_id="P1",
        patient_name="ROE^SAM",
        patient_birth_date="19700101",
        patient_sex="M",
        accession_number="A2",
        study_instance_uid="1.2.3.9",
        study_id="1",
        study_date="20210202",
        study_time="101500",
        study_description="CT",
        series_instance_uid="1.2.3.9.1",
        series_number=2,
        series_description="ct",
        frame_of_reference_uid="1.2.3.9.2",
    )
    geometry = Geometry.create(spacing=(4.0, 1.5, 1.5), origin=(0, 0, 0))
    return build_ct_slices(np.zeros(shape, np.int16), geometry, identity, ENCODINGS[1], ["seg-test"])


def _label(shape=(5, 12, 16)) -> np.ndarray:
    label = np.zeros(shape, np.uint8)
    label[1:4, 2:10, 3:12] = 1
    label[2, 4:6, 5:8] = 2
    return label


def test_seg_reads_back_with_highdicom(tmp_path: Path) -> None:
    source, label = _source(), _label()
    seg = build_seg(source, label, LABEL_NAMES, "1.2.3.9.100", "1.2.3.9.101", "20210202", "101500")
    path = write_seg(seg, tmp_path / "seg")
    back = hd.seg.segread(path)
    assert back.SegmentationType == "BINARY"
    assert back.StudyInstanceUID == "1.2.3.9" and back.PatientID == "P1"
    assert back.InstanceCreationDate == "20210202"
    referenced = {uid for _, _, uid in back.get_source_image_uids()}
    assert referenced == {str(ds.SOPInstanceUID) for ds in source}
    pixels = back.get_pixels_by_source_instance(
        [str(ds.SOPInstanceUID) for ds in source], combine_segments=True, skip_overlap_checks=False
    )
    np.testing.assert_array_equal(pixels, label)
    organ, lesion = back.get_segment_description(1), back.get_segment_description(2)
    assert organ.segment_label == "organ" and lesion.segment_label == "lesion"
    assert organ.segmented_property_type == codes.SCT.Organ
    assert lesion.segmented_property_type == codes.SCT.Lesion
    assert organ.algorithm_type == hd.seg.SegmentAlgorithmTypeValues.MANUAL


def test_seg_rejects_mismatched_label(tmp_path: Path) -> None:
    source = _source()
    with pytest.raises(ValueError, match="images"):
        build_seg(source, _label((4, 12, 16)), LABEL_NAMES, "1.2", "1.3", "20210202", "101500")
    bad = _label()
    bad[0, 0, 0] = 3
    with pytest.raises(ValueError, match=r"\[3\]"):
        build_seg(source, bad, LABEL_NAMES, "1.2", "1.3", "20210202", "101500")
