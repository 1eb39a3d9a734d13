"""The fast header / native pixel paths give exactly what pydicom gives.

The fast frame-group and SEG scans are compared with pydicom in test_frame_groups.py and test_seg_scan.py."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
from dicom_factory import ct_slices, write
from dicom_real_files import real_files as _files
from pydicom.uid import ImplicitVRLittleEndian

from medseg.ingest.headers import read_header
from medseg.ingest.stacks import frames_of
from medseg.io.dicom.fast_walk import scan_file
from medseg.io.dicom.pixels import read_native, read_stack
from medseg.io.dicom.read import describe_fields


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
