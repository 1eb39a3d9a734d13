"""DICOM SEG -> label map on the image grid (:mod:`medseg.io.dicom.seg`): thresholds, placement, mismatches."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from dicom_factory import ct_slices, seg_for, write

from medseg.geometry import Geometry
from medseg.ingest.headers import read_header
from medseg.ingest.stacks import Stack, assemble_series
from medseg.io.dicom.seg import seg_to_label
from medseg.io.reasons import IngestError, Reason


def _geom(st: Stack) -> Geometry:
    assert st.geometry is not None
    return st.geometry


def _stack(paths: list[Path]) -> Stack:
    (st,) = assemble_series([read_header(p, "x-secret") for p in paths]).stacks
    assert st.ok
    return st


def test_fractional_seg_is_thresholded_at_half(tmp_path: Path) -> None:
    dss, _ = ct_slices(n=3)
    paths = write(dss, tmp_path / "ct")
    frac = np.zeros((3, 8, 10, 1), np.float32)
    frac[1, 0, 0, 0] = 0.3
    frac[1, 0, 1, 0] = 0.7
    frac[2, 5, 5, 0] = 1.0
    seg_for(dss, frac, fractional=True).save_as(tmp_path / "seg")
    st = _stack(paths)
    label, names = seg_to_label(str(tmp_path / "seg"), _geom(st), st.frames)
    assert names == {1: "organ"}
    assert label.dtype == np.uint8
    assert set(zip(*np.nonzero(label), strict=True)) == {(1, 0, 1), (2, 5, 5)}


def test_partial_seg_lands_on_the_right_slices(tmp_path: Path) -> None:
    dss, _ = ct_slices(n=6, step=1.5)
    paths = write(dss, tmp_path / "ct")
    masks = np.zeros((2, 8, 10, 1), bool)
    masks[0, 1, 1] = masks[1, 2, 2] = True
    seg_for([dss[4], dss[1]], masks).save_as(tmp_path / "seg")  # only slices 4 and 1, in that order
    st = _stack(paths)
    label, _ = seg_to_label(str(tmp_path / "seg"), _geom(st), st.frames)
    assert set(zip(*np.nonzero(label), strict=True)) == {(4, 1, 1), (1, 2, 2)}


def test_seg_off_grid_is_a_mismatch(tmp_path: Path) -> None:
    dss, _ = ct_slices(n=3)
    paths = write(dss, tmp_path / "ct")
    shifted, _ = ct_slices(n=3, origin=(-10.3, -20.0, 30.0))  # 0.3 mm = 0.5 column: between pixels
    seg_for(shifted, np.ones((3, 8, 10, 1), bool)).save_as(tmp_path / "seg")
    st = _stack(paths)
    with pytest.raises(IngestError) as exc:
        seg_to_label(str(tmp_path / "seg"), _geom(st), st.frames)
    assert exc.value.reason == Reason.SEG_MISMATCH
