"""A stack's pixels (:mod:`medseg.io.dicom.pixels`): modality rescale, dtypes, per-slice scaling."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from dicom_factory import ct_slices, write

from medseg.ingest.headers import read_header
from medseg.ingest.stacks import Stack, assemble_series
from medseg.io.dicom.pixels import read_stack


def _stack(paths: list[Path]) -> Stack:
    (st,) = assemble_series([read_header(p, "x-secret") for p in paths]).stacks
    assert st.ok
    return st


def test_rescale_to_float_when_slope_is_fractional(tmp_path: Path) -> None:
    dss, stored = ct_slices(n=3, slope=0.5, intercept=-3.25)
    st = _stack(write(dss, tmp_path))
    vol = read_stack(st.frames)
    assert vol.dtype == np.float32
    np.testing.assert_allclose(vol, stored * 0.5 - 3.25)


def test_integer_rescale_outside_int16_becomes_float(tmp_path: Path) -> None:
    dss, stored = ct_slices(n=3, slope=20.0, intercept=0.0)
    vol = read_stack(_stack(write(dss, tmp_path)).frames)
    assert vol.dtype == np.float32 and vol.max() == pytest.approx(stored.max() * 20.0)


def test_per_slice_rescale_and_unsigned_values_above_int16(tmp_path: Path) -> None:
    """Each slice keeps its own slope/intercept; uint16 values > 32767 shifted into range stay exact int16."""
    dss, _ = ct_slices(n=3, rows=4, cols=5)
    raw = np.random.default_rng(1).integers(30000, 65535, size=(3, 4, 5)).astype(np.uint16)
    scales = [(1.0, -32768.0), (1.0, -40000.0), (1.0, -33000.0)]
    for ds, r, (slope, inter) in zip(dss, raw, scales, strict=True):
        ds.PixelRepresentation, ds.PixelData = 0, r.tobytes()
        ds.RescaleSlope, ds.RescaleIntercept = slope, inter
    vol = read_stack(_stack(write(dss, tmp_path)).frames)
    want = np.stack([r.astype(np.int64) * s + i for r, (s, i) in zip(raw, scales, strict=True)])
    assert vol.dtype == np.int16
    np.testing.assert_array_equal(vol, want)
    dss[1].RescaleSlope = 0.25  # one fractional slope makes the whole volume float
    vol = read_stack(_stack(write(dss, tmp_path / "f")).frames)
    assert vol.dtype == np.float32
    np.testing.assert_allclose(vol[1], raw[1] * 0.25 - 40000.0)
    np.testing.assert_array_equal(vol[0], want[0])
