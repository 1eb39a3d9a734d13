"""Volume sizes come from the headers and are checked against a ceiling before any pixel is allocated."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import nibabel as nib
import numpy as np
from dicom_factory import ct_slices, write

from medseg.config import IngestConfig
from medseg.ingest.run import ingest
from medseg.io.catalog import Catalog
from medseg.workspace import Workspace

CFG = IngestConfig(deid_secret="test-secret-123", files_per_batch=4)


def _quarantine(ws: Workspace) -> list[dict[str, str]]:
    return Catalog(ws.catalog_path).quarantine()


def test_a_header_declaring_46000_squared_pixels_is_a_pixel_error_without_allocating(tmp_path: Path) -> None:
    dss, _ = ct_slices(n=3, seed=1)
    for ds in dss:  # tiny files whose headers declare a huge matrix
        ds.Rows = ds.Columns = 46000
    write(dss, tmp_path / "src" / "huge")
    ws = Workspace.at(tmp_path / "ws")
    tracemalloc.start()
    try:
        summary = ingest([tmp_path / "src"], ws, CFG)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert summary.cases == 0
    assert peak < 256 * 2**20  # the decoder would allocate 3 x 46000 x 46000 x 2 bytes = 11.8 GiB
    rows = _quarantine(ws)
    assert {q["reason"] for q in rows} == {"pixel_error"}
    assert len(rows) == 3 and "3x46000x46000" in rows[0]["message"] and "max_volume_voxels" in rows[0]["message"]


def test_the_ceiling_is_configurable_per_volume(tmp_path: Path) -> None:
    write(ct_slices(n=3, seed=2)[0], tmp_path / "src" / "ct")  # 3 x 8 x 10 = 240 voxels
    nib.save(nib.Nifti1Image(np.zeros((10, 8, 4), np.int16), np.eye(4)), tmp_path / "src" / "vol.nii.gz")  # 320
    ws = Workspace.at(tmp_path / "ws")
    small = ingest([tmp_path / "src"], ws, CFG.model_copy(update={"max_volume_voxels": 300}))
    assert small.cases == 1
    assert {q["path"].rsplit("/", 1)[-1]: q["reason"] for q in _quarantine(ws)} == {"vol.nii.gz": "pixel_error"}
    assert ingest([tmp_path / "src"], ws, CFG.model_copy(update={"max_volume_voxels": 320})).cases == 2
