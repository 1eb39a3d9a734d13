"""Every file of a run is accounted for: part of an ingested case / label, or named in a quarantine row."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
from dicom_factory import ct_slices, seg_for, write
from pydicom.uid import UID

from medseg.config import IngestConfig
from medseg.ingest.run import ingest
from medseg.io.catalog import Catalog
from medseg.workspace import Workspace

CFG = IngestConfig(deid_secret="test-secret-123", files_per_batch=4)


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:-40])  # the pixel data loses its last 20 values


def _unaccounted(src: Path, ws: Workspace) -> set[str]:
    """Files under ``src`` neither in an ingested / label series nor named in a quarantine row."""
    with sqlite3.connect(ws.catalog_path) as con:
        good = {r[0] for r in con.execute("SELECT series_uid FROM series WHERE status IN ('ingested', 'label_source')")}
        in_good = {r[0] for r in con.execute("SELECT path, series_uid FROM files WHERE status = 'ok'") if r[1] in good}
    named = {q["path"] for q in Catalog(ws.catalog_path).quarantine()}
    return {str(p) for p in src.resolve().rglob("*") if p.is_file()} - in_good - named


def test_every_file_of_a_mask_series_with_one_bad_slice_has_a_row_the_bad_one_named(tmp_path: Path) -> None:
    src = tmp_path / "src"
    t1, _ = ct_slices(n=4, description="T1post", modality="MR", intercept=0.0)
    mask, _ = ct_slices(n=4, study_uid=t1[0].StudyInstanceUID, description="Mask_Tumor", modality="MR", intercept=0.0)
    for ds, ref in zip(mask, t1, strict=True):
        ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = UID("1.2.840.10008.5.1.4.1.1.7")
        ds.ImageType = ["DERIVED", "SECONDARY", "OTHER"]
        ds.ImagePositionPatient = ref.ImagePositionPatient
        ds.PixelData = np.ones((8, 10), np.int16).tobytes()
    write(t1, src / "t1")
    mask_paths = write(mask, src / "mask", names=[f"m{k}" for k in range(4)])
    _truncate(mask_paths[2])
    ws = Workspace.at(tmp_path / "ws")
    summary = ingest([src], ws, CFG)
    assert (summary.cases, summary.labeled_cases) == (1, 0)
    rows = [q for q in Catalog(ws.catalog_path).quarantine() if "/mask/" in q["path"]]
    assert sorted(q["path"] for q in rows) == sorted(str(p.resolve()) for p in mask_paths)
    assert {q["reason"] for q in rows} == {"pixel_error"}
    assert all(str(mask_paths[2].resolve()) in q["message"] for q in rows)  # every row names the culprit
    assert _unaccounted(src, ws) == set()


def test_a_seg_whose_image_series_was_quarantined_is_quarantined_too(tmp_path: Path) -> None:
    src = tmp_path / "src"
    dss, _ = ct_slices(n=4, seed=3)
    masks = np.zeros((4, 8, 10, 1), bool)
    masks[1:3, 2:5, 2:6] = True
    ct_paths = write(dss, src / "ct", names=[f"c{k}" for k in range(4)])
    (src / "seg").mkdir()
    seg_for(dss, masks).save_as(src / "seg" / "s.dcm")
    _truncate(ct_paths[2])
    ws = Workspace.at(tmp_path / "ws")
    assert ingest([src], ws, CFG).cases == 0
    cat = Catalog(ws.catalog_path)
    (seg_row,) = [r for r in cat.series_rows().values() if r["kind"] == "seg"]
    assert (seg_row["status"], seg_row["reason"]) == ("quarantined", "seg_unreferenced")
    reasons = {Path(q["path"]).name: q["reason"] for q in cat.quarantine()}
    assert reasons == {"c0": "pixel_error", "c1": "pixel_error", "c2": "pixel_error", "c3": "pixel_error",
                       "s.dcm": "seg_unreferenced"}
    assert _unaccounted(src, ws) == set()
