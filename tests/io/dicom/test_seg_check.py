"""DICOM SEG checked as a PACS would (medseg.io.dicom.seg_check), on real series of ../shared/data/real.

The real writer's SEGs of a two-class label map on an oblique glioblastoma MR (TCIA PGBM-001 T1post,
class 1 = its real tumour mask) and on the JPEG 2000 and JPEG-lossless compressed copies of a
dicom2nifti MR series pass the check and decode to the label map; SEGs edited with pydicom get their
specific problem reported; the writer removes a SEG that fails.

The compressed series has no FrameOfReferenceUID, which a SEG must share with its source: as it is,
the writer skips it with that reason; the SEG tests use a copy (in the test's temporary folder)
whose headers gained one, as a conformant archive's would have, pixel data untouched.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import highdicom as hd
import numpy as np
import pydicom
import pytest
from numpy.typing import NDArray
from pydicom.uid import generate_uid

from medseg.config import IngestConfig
from medseg.ingest.run import ingest
from medseg.io.catalog import Catalog
from medseg.io.dicom import seg_writer
from medseg.io.dicom.seg_check import ExpectedSeg, SegCheckError, check_seg
from medseg.io.volume_store import read_case
from medseg.workspace import Workspace

pytestmark = pytest.mark.realdata

CFG = IngestConfig(deid_secret="segcheck-secret", files_per_batch=64)
PGBM = "tcia-brain-tumor-progression/PGBM-001/11-19-1991-FH-HEADBrain Protocols-40993"
#: name -> (image series folder, optional label folders ingested with it)
SERIES = {
    "pgbm_t1post": (f"{PGBM}/11-T1post-03326", f"{PGBM}/5364-MaskTumor-94345"),
    "compressed_j2k": ("dicom2nifti/generic/compressed/001",),
    "compressed_jpeg_lossless": ("dicom2nifti/generic/compressed_jpeg/001",),
}
#: series whose copy gets a FrameOfReferenceUID before ingest (the originals have none)
NO_FRAME_OF_REFERENCE = {"compressed_j2k", "compressed_jpeg_lossless"}
FAMILY, VERSION = "cnn", "20260101T000000000000Z-0123abcd"
LABEL_NAMES = {1: "tumor", 2: "organ"}
FOREIGN_UID = "1.2.826.0.1.3680043.8.498.999"


@dataclass(frozen=True)
class WrittenSeg:
    """A SEG written by the real writer, and what to check it against."""

    path: Path
    source_files: list[Path]  # listed from the series folder, not taken from the writer
    expected: ExpectedSeg
    catalog_path: Path
    case_id: str


def _two_class_label(shape: tuple[int, ...], gt: NDArray[np.uint8] | None) -> NDArray[np.uint8]:
    """Class 1: the real tumour mask where there is one, else a box; class 2: an ellipsoid beside it.

    The first and last slices stay empty, so the writer omits their frames.
    """
    nz, ny, nx = shape
    label = np.zeros(shape, np.uint8)
    if gt is not None and gt.any():
        label[gt > 0] = 1
    else:
        label[1 : nz - 1, ny // 4 : ny // 2, nx // 4 : nx // 2] = 1
    z, y, x = np.ogrid[:nz, :ny, :nx]
    rz, r = max(1.0, nz / 4), 0.15 * min(ny, nx)
    ball = ((z - nz / 2) / rz) ** 2 + ((y - 0.7 * ny) / r) ** 2 + ((x - 0.7 * nx) / r) ** 2 <= 1
    label[ball & (label == 0)] = 2
    label[[0, -1]] = 0
    return label


def _with_frame_of_reference(folder: Path, out: Path) -> Path:
    """A copy of the series in ``folder`` whose headers gained a FrameOfReferenceUID (pixel data as stored)."""
    out.mkdir(parents=True)
    for p in sorted(folder.iterdir()):
        ds = pydicom.dcmread(p)
        assert "FrameOfReferenceUID" not in ds
        ds.FrameOfReferenceUID = generate_uid(entropy_srcs=["segcheck-for", str(ds.SeriesInstanceUID)])
        ds.save_as(out / p.name)
    return out


def _write(name: str, real_data: Path, root: Path) -> WrittenSeg:
    """Ingest the series into a fresh workspace and write a SEG of a two-class label map with the real writer."""
    ws = Workspace.at(root / "ws")
    folders = [real_data / rel for rel in SERIES[name]]
    if name in NO_FRAME_OF_REFERENCE:
        folders = [_with_frame_of_reference(folders[0], root / "series")]
    ingest(folders, ws, CFG)
    (record,) = Catalog(ws.catalog_path).cases()
    case = read_case(record.volume_path)
    label = _two_class_label(case.image.shape, case.labels.get("gt"))
    assert set(np.unique(label).tolist()) == {0, 1, 2}
    path = seg_writer.write_prediction_seg(
        ws.catalog_path, root / "pred", record.case_id, label, case.geometry, LABEL_NAMES, FAMILY, VERSION
    )
    files = sorted(p for p in folders[0].iterdir() if p.is_file())
    expected = ExpectedSeg(label_zyx=label, geometry=case.geometry, label_names=LABEL_NAMES, family=FAMILY,
                           version=VERSION)
    return WrittenSeg(path, files, expected, ws.catalog_path, record.case_id)


@pytest.fixture(scope="module")
def written(real_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], WrittenSeg]:
    """``written(name)``: the SEG of series ``name``, ingested and written once per module."""
    cache: dict[str, WrittenSeg] = {}

    def get(name: str) -> WrittenSeg:
        if name not in cache:
            cache[name] = _write(name, real_data, tmp_path_factory.mktemp(name))
        return cache[name]

    return get


def _instances_in_slice_order(files: list[Path], expected: ExpectedSeg) -> list[str]:
    """SOPInstanceUIDs of the source files ordered by the volume slice their position maps to."""
    z_of = {}
    for p in files:
        ds = pydicom.dcmread(p, stop_before_pixels=True)
        z_of[str(ds.SOPInstanceUID)] = float(expected.geometry.lps_to_index(np.asarray(ds.ImagePositionPatient))[0])
    return sorted(z_of, key=z_of.__getitem__)


@pytest.mark.parametrize("name", sorted(SERIES))
def test_real_writer_seg_is_consistent_with_its_series(written: Callable[[str], WrittenSeg], name: str) -> None:
    w = written(name)
    assert check_seg(w.path, w.source_files, w.expected) == []
    assert check_seg(w.path, w.source_files) == []  # references and geometry only
    label = w.expected.label_zyx
    # independent of the checker: highdicom's frames per source instance, in slice order, are the label map
    uids = _instances_in_slice_order(w.source_files, w.expected)
    assert len(uids) == label.shape[0]
    mask = hd.seg.segread(w.path).get_pixels_by_source_instance(uids, combine_segments=True)
    np.testing.assert_array_equal(mask, label)
    # the empty first and last slices have no frame: the check covered omitted frames too
    ds = pydicom.dcmread(w.path, stop_before_pixels=True)
    per_segment = [int((label == c).any(axis=(1, 2)).sum()) for c in (1, 2)]
    assert int(ds.NumberOfFrames) == sum(per_segment) < 2 * label.shape[0]


def _frame(ds: pydicom.Dataset, f: int) -> Any:
    return ds.PerFrameFunctionalGroupsSequence[f]


def _source_ref(ds: pydicom.Dataset, f: int) -> Any:
    return _frame(ds, f).DerivationImageSequence[0].SourceImageSequence[0]


def _set(item: Callable[[pydicom.Dataset], Any], keyword: str, value: Any) -> Callable[[pydicom.Dataset], None]:
    """An edit that sets ``keyword`` of the item ``item(ds)`` of the SEG to ``value``."""

    def edit(ds: pydicom.Dataset) -> None:
        setattr(item(ds), keyword, value)

    return edit


def _move_frame(ds: pydicom.Dataset, f: int, mm: float) -> None:
    """Move frame ``f`` by ``mm`` along the slice normal."""
    iop = np.asarray(ds.SharedFunctionalGroupsSequence[0].PlaneOrientationSequence[0].ImageOrientationPatient, float)
    plane = _frame(ds, f).PlanePositionSequence[0]
    ipp = np.asarray(plane.ImagePositionPatient, float) + mm * np.cross(iop[:3], iop[3:])
    plane.ImagePositionPatient = [f"{v:.6f}" for v in ipp]


def _tilt(ds: pydicom.Dataset) -> None:
    plane = ds.SharedFunctionalGroupsSequence[0].PlaneOrientationSequence[0]
    iop = np.asarray(plane.ImageOrientationPatient, float)
    c, s = np.cos(0.01), np.sin(0.01)  # rotate both cosines by 0.01 rad about the normal
    plane.ImageOrientationPatient = [f"{v:.8f}" for v in [*(c * iop[:3] + s * iop[3:]), *(c * iop[3:] - s * iop[:3])]]


def _stretch_spacing(ds: pydicom.Dataset) -> None:
    measures = ds.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0]
    measures.PixelSpacing = [f"{float(v) * 1.01:.6f}" for v in measures.PixelSpacing]


def _set_first_pixels(ds: pydicom.Dataset) -> None:
    """Set the first 8 pixels (row 0, a background corner) of frame 1, a frame of segment 1."""
    data = bytearray(ds.PixelData)
    data[0] |= 0xFF
    ds.PixelData = bytes(data)


EDITS: dict[str, tuple[Callable[[pydicom.Dataset], None], str]] = {
    "frame_position": (
        lambda ds: _move_frame(ds, 2, 2.0),
        r"frame 3: PlanePositionSequence ImagePositionPatient \[.*\] is 2\.000 mm from \[.*\], the position of "
        r"the source instance [0-9.]+ it references",
    ),
    "foreign_frame_reference": (
        _set(lambda ds: _source_ref(ds, 1), "ReferencedSOPInstanceUID", FOREIGN_UID),
        rf"frame 2: DerivationImageSequence/SourceImageSequence: ReferencedSOPInstanceUID '{FOREIGN_UID}' is not "
        r"an instance of the source series [0-9.]+",
    ),
    "foreign_listed_instance": (
        _set(lambda ds: ds.ReferencedSeriesSequence[0].ReferencedInstanceSequence[0], "ReferencedSOPInstanceUID",
             FOREIGN_UID),
        rf"ReferencedSeriesSequence item 1 ReferencedInstanceSequence item 1: ReferencedSOPInstanceUID "
        rf"'{FOREIGN_UID}' is not an instance of the source series [0-9.]+",
    ),
    "wrong_sop_class_of_reference": (
        _set(lambda ds: _source_ref(ds, 0), "ReferencedSOPClassUID", "1.2.840.10008.5.1.4.1.1.2"),
        r"frame 1: DerivationImageSequence/SourceImageSequence: ReferencedSOPClassUID '1\.2\.840\.10008\.5\.1\.4\.1"
        r"\.1\.2' of instance [0-9.]+ is not its SOP class '1\.2\.840\.10008\.5\.1\.4\.1\.1\.4'",
    ),
    "frame_of_reference": (
        _set(lambda ds: ds, "FrameOfReferenceUID", FOREIGN_UID),
        rf"FrameOfReferenceUID is '{FOREIGN_UID}', the source series' is '[0-9.]+'",
    ),
    "study": (
        _set(lambda ds: ds, "StudyInstanceUID", FOREIGN_UID),
        rf"StudyInstanceUID is '{FOREIGN_UID}', the source series' is '[0-9.]+'",
    ),
    "referenced_series": (
        _set(lambda ds: ds.ReferencedSeriesSequence[0], "SeriesInstanceUID", FOREIGN_UID),
        rf"ReferencedSeriesSequence item 1: SeriesInstanceUID '{FOREIGN_UID}' is not the source series '[0-9.]+'",
    ),
    "segment_number_of_frame": (
        _set(lambda ds: _frame(ds, 0).SegmentIdentificationSequence[0], "ReferencedSegmentNumber", 7),
        r"frame 1: SegmentIdentificationSequence ReferencedSegmentNumber 7 is not a segment of the SEG "
        r"\(SegmentSequence has \[1, 2\]\)",
    ),
    "orientation": (
        _tilt,
        r"frame 1: PlaneOrientationSequence ImageOrientationPatient \[.*\] is not \[.*\], the orientation of the "
        r"source instance [0-9.]+ it references",
    ),
    "pixel_spacing": (
        _stretch_spacing,
        r"frame 1: PixelMeasuresSequence PixelSpacing \[.*\] is not \[.*\], the spacing of the source instance "
        r"[0-9.]+ it references",
    ),
    "segment_label": (
        _set(lambda ds: ds.SegmentSequence[1], "SegmentLabel", "vessel"),
        r"segment 2 \(class 2 'organ'\): SegmentLabel 'vessel' is not 'organ'",
    ),
    "property_type": (
        _set(lambda ds: ds.SegmentSequence[0].SegmentedPropertyTypeCodeSequence[0], "CodeValue", "39607008"),
        r"segment 1 \(class 1 'tumor'\): SegmentedPropertyTypeCodeSequence is \(39607008, SCT, 'Neoplasm'\), "
        r"not \(108369006, SCT, 'Neoplasm'\)",
    ),
    "algorithm_version": (
        _set(lambda ds: ds.SegmentSequence[0].SegmentationAlgorithmIdentificationSequence[0], "AlgorithmVersion",
             "other"),
        rf"segment 1 \(class 1 'tumor'\): AlgorithmVersion 'other' is not '{VERSION}'",
    ),
    "pixels": (
        _set_first_pixels,
        r"slice z=\d+ \(source instance [0-9.]+\): 8 voxels of the decoded SEG differ from the written label map",
    ),
}


@pytest.mark.parametrize("edit", sorted(EDITS))
def test_edited_seg_gets_its_problem_reported(written: Callable[[str], WrittenSeg], tmp_path: Path, edit: str) -> None:
    w = written("pgbm_t1post")
    change, pattern = EDITS[edit]
    ds = pydicom.dcmread(w.path)
    change(ds)
    edited = tmp_path / "edited.dcm"
    ds.save_as(edited)
    problems = check_seg(edited, w.source_files, w.expected)
    assert any(re.fullmatch(pattern, p) for p in problems), problems


def test_writer_removes_a_seg_that_fails_the_check(
    written: Callable[[str], WrittenSeg], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    w = written("compressed_j2k")
    e = w.expected
    args = (w.catalog_path, tmp_path, w.case_id, e.label_zyx, e.geometry, LABEL_NAMES, FAMILY, VERSION)
    good = seg_writer.write_prediction_seg(*args)
    assert good.is_file()
    build = seg_writer.build_prediction_seg

    def defective_build(*a: Any, **kw: Any) -> hd.seg.Segmentation:
        seg = build(*a, **kw)
        seg.FrameOfReferenceUID = FOREIGN_UID
        return seg

    monkeypatch.setattr(seg_writer, "build_prediction_seg", defective_build)
    with pytest.raises(SegCheckError, match=rf"FrameOfReferenceUID is '{FOREIGN_UID}'") as err:
        seg_writer.write_prediction_seg(*args)
    assert err.value.path == good
    assert not good.exists() and list(good.parent.iterdir()) == []  # neither the old SEG nor a temporary file


@pytest.mark.parametrize("name", sorted(NO_FRAME_OF_REFERENCE))
def test_series_without_frame_of_reference_is_skipped_with_the_reason(
    real_data: Path, tmp_path: Path, name: str
) -> None:
    ws = Workspace.at(tmp_path / "ws")
    ingest([real_data / SERIES[name][0]], ws, CFG)
    (record,) = Catalog(ws.catalog_path).cases()
    case = read_case(record.volume_path)
    label = _two_class_label(case.image.shape, None)
    with pytest.raises(seg_writer.DicomSourceUnavailable, match="has no FrameOfReferenceUID; a DICOM SEG must carry"):
        seg_writer.write_prediction_seg(
            ws.catalog_path, tmp_path / "pred", record.case_id, label, case.geometry, LABEL_NAMES, FAMILY, VERSION
        )
    assert not (tmp_path / "pred").exists()


def test_source_that_is_not_one_series_is_a_caller_error(written: Callable[[str], WrittenSeg], real_data: Path) -> None:
    w = written("compressed_j2k")
    other = sorted((real_data / SERIES["pgbm_t1post"][0]).iterdir())[:1]
    with pytest.raises(ValueError, match="not one series: SeriesInstanceUID"):
        check_seg(w.path, [*w.source_files, *other], w.expected)
    with pytest.raises(ValueError, match="none were given"):
        check_seg(w.path, [], w.expected)
