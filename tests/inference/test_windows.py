"""medseg.inference.windows: window starts equal MONAI's, the window grid, the Gaussian weight map."""

from __future__ import annotations

import pytest
import torch
from monai.data.utils import dense_patch_slices
from monai.inferers.utils import _get_scan_interval

from medseg.inference.windows import axis_starts, gaussian_weights, window_grid


@pytest.mark.parametrize("size,roi", [(10, 16), (16, 16), (17, 16), (40, 16), (63, 32), (5, 1)])
@pytest.mark.parametrize("overlap", [0.0, 0.25, 0.5, 0.75])
def test_axis_starts_equal_monai(size: int, roi: int, overlap: float) -> None:
    padded = max(size, roi)
    interval = _get_scan_interval((padded,), (roi,), 1, (overlap,))
    expected = [s[0].start for s in dense_patch_slices((padded,), (roi,), interval)]
    assert axis_starts(size, roi, overlap) == expected


def test_window_grid_pads_short_axes_and_counts_windows() -> None:
    grid = window_grid((10, 40, 64), (16, 32, 32), 0.5)
    assert grid.pad_lo == (3, 0, 0) and grid.padded_shape == (16, 40, 64)
    assert grid.starts == ([0], [0, 8], [0, 16, 32])
    assert grid.n_windows == 6
    assert grid.inplane_starts() == [(0, 0), (0, 16), (0, 32), (8, 0), (8, 16), (8, 32)]
    with pytest.raises(ValueError, match="overlap"):
        window_grid((10, 10, 10), (4, 4, 4), 1.0)


def test_gaussian_weights_peak_in_the_centre() -> None:
    w = gaussian_weights((5, 9, 9))
    assert w.shape == (5, 9, 9) and w.dtype == torch.float32
    assert float(w.max()) == pytest.approx(1.0) and float(w[2, 4, 4]) == pytest.approx(1.0)
    assert float(w.min()) >= 1e-3 and float(w[0, 0, 0]) < float(w[2, 4, 4])
