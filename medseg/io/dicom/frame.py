"""One 2D frame of a DICOM image file: where it lies in patient space and how its pixels are stored."""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray


@dataclass(frozen=True)
class Frame:
    """One 2D frame: a single-frame instance (frame 0) or one frame of a multi-frame file."""

    path: str
    frame: int
    sop_uid: str
    ipp: tuple[float, float, float]
    iop: tuple[float, ...]
    spacing: tuple[float, float]
    rows: int
    cols: int
    #: native single-frame layout from the header (offset, bits, stored bits, signed, slope, intercept,
    #: file size), so pixels are read without parsing the header again; None = decode with pydicom
    pixel: tuple[int, int, int, bool, float, float, int] | None = None

    @property
    def folder(self) -> str:
        return os.path.dirname(self.path)

    def normal(self) -> NDArray[np.float64]:
        row = np.asarray(self.iop[:3])
        col = np.asarray(self.iop[3:])
        n = np.cross(row, col)
        return n / max(float(np.linalg.norm(n)), 1e-12)
