"""DICOM SEG content without pydicom (medseg.io.dicom.seg_scan): segments, frame placement and frames
equal what the pydicom reader gives, on generated (binary and fractional) and real SEGs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from dicom_factory import ct_slices, seg_for
from dicom_real_files import normalised as _normalised
from dicom_real_files import seg_files as _seg_files

from medseg.io.dicom.frame_groups import dataset_frame_table
from medseg.io.dicom.seg import read_seg, seg_segments
from medseg.io.dicom.seg_scan import scan_seg


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
