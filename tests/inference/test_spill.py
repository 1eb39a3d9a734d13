"""medseg.inference.spill: a float32 volume on disk, written and read by z-slabs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from medseg.inference.spill import SpillVolume


def test_slabs_round_trip_and_unwritten_planes_are_zero(tmp_path: Path) -> None:
    vol = SpillVolume(tmp_path / "v.raw", (5, 3, 4))
    try:
        slab = np.arange(24, dtype=np.float64).reshape(2, 3, 4)
        vol[1:3] = slab
        vol[4:5] = 7.0  # broadcast
        whole = vol[...]
        assert whole.dtype == np.float32 and whole.shape == (5, 3, 4)
        np.testing.assert_array_equal(whole[1:3], slab.astype(np.float32))
        assert not whole[0].any() and not whole[3].any() and np.all(whole[4] == 7.0)
        np.testing.assert_array_equal(vol[2:4], whole[2:4])
        assert (tmp_path / "v.raw").stat().st_size == 5 * 3 * 4 * 4
        with pytest.raises(TypeError, match="z-slices"):
            vol[0:4:2]
    finally:
        vol.close()
        vol.close()  # idempotent
