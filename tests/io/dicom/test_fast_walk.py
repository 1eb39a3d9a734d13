"""The fast header / native pixel paths give exactly what pydicom gives."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
from dicom_factory import ct_slices, seg_for, write
from pydicom.uid import ImplicitVRLittleEndian

from medseg.ingest.headers import read_header
from medseg.ingest.stacks import frames_of
from medseg.io.dicom.fast_walk import scan_file
from medseg.io.dicom.frame_groups import dataset_frame_table, scan_frame_groups
from medseg.io.dicom.pixels import read_native, read_stack
from medseg.io.dicom.read import describe_fields
from medseg.io.dicom.seg import read_seg, seg_segments
from medseg.io.dicom.seg_scan import scan_seg

REAL = ("dicom2nifti", "pydicom-data", "dicom-edge-cases", "tcia-brain-tumor-progression", "rt-utils", "dcmqi-seg")


def _files(real_data: Path) -> list[Path]:
    return sorted(p for d in REAL for p in (real_data / d).rglob("*") if p.is_file())


def test_fast_and_pydicom_headers_are_identical_on_real_files(real_data: Path) -> None:
    fast_used = fast_seg = 0
    for p in _files(real_data):
        fast = read_header(p, "s3cret-key", fast=True)
        slow = read_header(p, "s3cret-key", fast=False)
        assert fast == slow, p
        scanned = scan_file(str(p))
        fast_used += scanned is not None and fast.get("kind") == "image"
        fast_seg += scanned is not None and fast.get("kind") == "seg" and describe_fields(scanned, "k") is not None
    assert fast_used > 300  # the fast path really ran on most classic images
    assert fast_seg >= 7  # and on the DICOM SEGs (all but the big-endian one)


def test_native_pixels_equal_pydicom_pixel_array(real_data: Path) -> None:
    checked = 0
    for p in _files(real_data):
        h = read_header(p, "k-secret-1")
        if h.get("status") != "ok" or h.get("kind") != "image" or not h.get("pixel"):
            continue
        (frame,) = frames_of(h)
        ours = read_native(frame)
        ref = pydicom.dcmread(p).pixel_array
        np.testing.assert_array_equal(ours, ref, err_msg=str(p))
        assert ours.dtype.itemsize == ref.dtype.itemsize
        checked += 1
    assert checked > 300


@pytest.mark.parametrize("implicit", [False, True])
def test_generated_series_take_the_fast_path(tmp_path: Path, implicit: bool) -> None:
    dss, stored = ct_slices(n=4, rows=6, cols=7, slope=2.0, intercept=-10.0)
    for ds in dss:
        ds.BitsStored, ds.HighBit = 12, 11  # unused high bits must be sign-extended
        ds.SeriesDescription = "abc  "  # trailing spaces are not part of the value
        if implicit:
            ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    stored = np.clip(stored, -2048, 2047)
    for ds, s in zip(dss, stored, strict=True):
        ds.PixelData = (s.astype(np.int16).view(np.uint16) | np.uint16(0xF000)).tobytes()  # garbage high bits
    paths = write(dss, tmp_path)
    headers = [read_header(p, "k-secret-2") for p in paths]
    assert all(scan_file(str(p)) is not None for p in paths)
    assert headers == [read_header(p, "k-secret-2", fast=False) for p in paths]
    assert headers[0]["description"] == "abc" and headers[0]["pixel"]["stored"] == 12
    frames = sorted((f for h in headers for f in frames_of(h)), key=lambda f: f.ipp[2])
    np.testing.assert_array_equal(read_stack(frames), stored * 2 - 10)


def test_changed_file_is_a_pixel_error(tmp_path: Path) -> None:
    dss, _ = ct_slices(n=1)
    (p,) = write(dss, tmp_path)
    (frame,) = frames_of(read_header(p, "k-secret-3"))
    with open(p, "ab") as fh:
        fh.write(b"\0\0")
    with pytest.raises(Exception, match="changed since its header was read"):
        read_native(frame)


def _normalised(table: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    return [
        tuple(None if v is None else int(v) if i == 3 else tuple(float(x) for x in v) for i, v in enumerate(row))
        for row in table
    ]


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


def _seg_files(real_data: Path) -> list[Path]:
    out = []
    for p in _files(real_data) + sorted((real_data / "highdicom-testfiles").rglob("*.dcm")):
        try:
            ds = pydicom.dcmread(p, stop_before_pixels=True)
        except Exception:  # noqa: BLE001 - not DICOM
            continue
        if ds.get("SOPClassUID") == "1.2.840.10008.5.1.4.1.1.66.4":
            out.append(p)
    return out


@pytest.mark.parametrize("fractional", [False, True])
def test_seg_scan_equals_pydicom_content(real_data: Path, tmp_path: Path, fractional: bool) -> None:
    """scan_seg reads the same segments, frame placement and frames as pydicom (real + generated SEGs)."""
    dss, _ = ct_slices(n=5, rows=9, cols=11)  # 9*11 bits per frame: frames straddle byte boundaries
    masks = np.random.default_rng(3).random((5, 9, 11, 2)) * (0.99 if fractional else 1.0)
    masks = masks if fractional else masks > 0.6
    seg_for(dss, masks, names=("organ", "tumour"), fractional=fractional).save_as(tmp_path / "gen.dcm")
    fast_used = 0
    for p in [tmp_path / "gen.dcm", *_seg_files(real_data)]:
        fast = scan_seg(str(p))
        if fast is None:
            continue
        ds, frames = read_seg(str(p))
        n = frames.shape[0]
        assert fast.segments == seg_segments(ds), p
        assert fast.seg_type == str(ds.get("SegmentationType", "BINARY")).upper(), p
        assert fast.max_fractional == float(ds.get("MaximumFractionalValue", 255) or 255), p
        assert _normalised(fast.table) == _normalised(dataset_frame_table(ds, n)), p
        np.testing.assert_array_equal(fast.frames, frames, err_msg=str(p))
        assert fast.frames.dtype == frames.dtype, p
        fast_used += 1
    assert scan_seg(str(tmp_path / "gen.dcm")) is not None
    assert fast_used >= 8  # the generated SEG and most real ones take the fast path
