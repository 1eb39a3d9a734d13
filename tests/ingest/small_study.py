"""One small generated study for the ingest unit tests: a CT series of 4 slices with a DICOM SEG
labelling it, plus a stray SEG whose image series is not in the source; and their header dicts."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from dicom_factory import ct_slices, seg_for, write

from medseg.ingest.headers import read_header


@dataclass
class SmallStudy:
    slices: list[Path]  # the CT slices, in stacking order
    series_uid: str  # the CT series
    seg: Path  # the SEG on the CT series
    seg_uid: str
    stray: Path  # a SEG on a series that is not in the source
    stray_uid: str


def small_study(root: Path) -> SmallStudy:
    dss, _ = ct_slices(n=4, seed=11)
    slices = write(dss, root / "ct", names=[f"s{i}.dcm" for i in range(4)])
    masks = np.zeros((4, 8, 10, 1), bool)
    masks[1:3, 2:5, 3:7, 0] = True
    seg = seg_for(dss, masks, names=("liver",))
    seg.save_as(root / "seg.dcm")
    elsewhere, _ = ct_slices(n=4, seed=12)
    stray = seg_for(elsewhere, masks)
    stray.save_as(root / "stray.dcm")
    return SmallStudy(slices, str(dss[0].SeriesInstanceUID), root / "seg.dcm", str(seg.SeriesInstanceUID),
                      root / "stray.dcm", str(stray.SeriesInstanceUID))


def headers_of(root: Path, secret: str) -> list[dict[str, Any]]:
    """The header dict of every file under ``root``, sorted by path."""
    return [read_header(p, secret) for p in sorted(root.rglob("*")) if p.is_file()]
