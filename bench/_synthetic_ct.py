"""The synthetic CT volume of the inference benches (bench/infer.py, bench/scale.py (a))."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray


def synthetic_ct(seed: int, slices: int, size: int) -> tuple[NDArray[np.int16], NDArray[np.bool_]]:
    """A body ellipse (40 HU in -1000 HU air) with an organ ellipsoid (120 HU) and Gaussian noise (sd 15).

    Returns:
        ``(hu, organ)``: int16 HU of shape ``(slices, size, size)`` (z, y, x) and the organ mask.
    """
    rng = np.random.default_rng(seed)
    z, y, x = np.ogrid[:slices, :size, :size]
    body = ((y - size / 2) / (0.45 * size)) ** 2 + ((x - size / 2) / (0.4 * size)) ** 2 <= 1
    organ = ((z - slices / 2) / (0.3 * slices)) ** 2 + ((y - 0.45 * size) / (0.15 * size)) ** 2 + (
        (x - 0.6 * size) / (0.13 * size)) ** 2 <= 1
    hu = np.broadcast_to(np.where(body, 40, -1000), (slices, size, size)).astype(np.int16)
    hu[organ] = 120
    hu += rng.normal(0, 15, hu.shape).astype(np.int16)
    return hu, organ
