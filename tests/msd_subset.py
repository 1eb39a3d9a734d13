"""Test helper: an MSD-layout folder of a few real hippocampus cases (symbolic links, ``dataset.json`` listing only
them), the shape ``medseg ingest`` reads (``from msd_subset import msd_subset``)."""

from __future__ import annotations

import json
from pathlib import Path

HIPPOCAMPUS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real" / "msd-hippocampus"


def msd_subset(dest: Path, cases: list[str]) -> Path:
    """``dest`` holding ``cases`` of the shared MSD hippocampus set (``imagesTr``/``labelsTr`` links)."""
    meta = json.loads((HIPPOCAMPUS / "dataset.json").read_text())
    for sub in ("imagesTr", "labelsTr"):
        (dest / sub).mkdir(parents=True)
        for case in cases:
            (dest / sub / f"{case}.nii.gz").symlink_to(HIPPOCAMPUS / sub / f"{case}.nii.gz")
    meta.update(numTraining=len(cases), numTest=0, test=[],
                training=[{"image": f"./imagesTr/{c}.nii.gz", "label": f"./labelsTr/{c}.nii.gz"} for c in cases])
    (dest / "dataset.json").write_text(json.dumps(meta))
    return dest
