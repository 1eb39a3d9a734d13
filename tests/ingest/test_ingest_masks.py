"""Mask image series as labels (:mod:`medseg.ingest.masks`); SEG and pixel tests are in tests/io/dicom/."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from dicom_factory import ct_slices, write
from numpy.typing import NDArray
from pydicom.dataset import Dataset
from pydicom.uid import UID

from medseg.config import IngestConfig
from medseg.ingest.run import ingest
from medseg.io.catalog import Catalog
from medseg.io.volume_store import read_case
from medseg.workspace import Workspace

CFG = IngestConfig(deid_secret="labels-secret", files_per_batch=16)


def _mask_series(like: list[Dataset], values: NDArray[Any], description: str = "Mask_Tumor") -> list[Dataset]:
    """A Secondary-Capture-like mask series on the grid of ``like`` (same study)."""
    mask, _ = ct_slices(
        n=len(like), study_uid=like[0].StudyInstanceUID, description=description, modality="MR", intercept=0.0
    )
    for ds, ref, v in zip(mask, like, values, strict=True):
        ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = UID("1.2.840.10008.5.1.4.1.1.7")
        ds.ImageType = ["DERIVED", "SECONDARY", "OTHER"]
        ds.ImagePositionPatient = ref.ImagePositionPatient
        ds.PixelData = v.astype(np.int16).tobytes()
        ds.SeriesNumber = 900
    return mask


def test_mask_series_is_linked_as_label_of_same_grid_image(tmp_path: Path) -> None:
    src = tmp_path / "study"
    t1, _ = ct_slices(n=4, description="T1post", modality="MR", intercept=0.0)
    flair, _ = ct_slices(n=4, study_uid=t1[0].StudyInstanceUID, description="FLAIR_reg", modality="MR", intercept=0.0)
    for ds in flair:
        ds.SeriesNumber = 1  # lower number, but marked as registered: T1post must win
    values = np.zeros((4, 8, 10), np.int16)
    values[1:3, 2:4, 2:5] = 255
    write(t1, src / "t1")
    write(flair, src / "flair")
    write(_mask_series(t1, values), src / "mask")
    ws = Workspace.at(tmp_path / "ws")
    s = ingest([src], ws, CFG)
    assert s.cases == 2 and s.labeled_cases == 1
    rec = Catalog(ws.catalog_path).case(t1[0].SeriesInstanceUID)
    assert rec.has_labels and rec.label_names == {1: "tumor"}
    case = read_case(rec.volume_path)
    np.testing.assert_array_equal(case.labels["gt"], (values > 0).astype(np.uint8))
    assert case.source["label_source"] == "mask_series"
    kinds = {(r["kind"], r["status"]) for r in Catalog(ws.catalog_path).series_table()}
    assert ("mask", "label_source") in kinds


def test_mask_without_matching_grid_is_quarantined(tmp_path: Path) -> None:
    t1, _ = ct_slices(n=4, description="T1post", modality="MR")
    mask = _mask_series(t1, np.zeros((4, 8, 10), np.int16))
    for k, ds in enumerate(mask):
        ds.ImagePositionPatient = [0, 0, 100 + 2.5 * k]
    write(t1, tmp_path / "src" / "t1")
    write(mask, tmp_path / "src" / "mask")
    ws = Workspace.at(tmp_path / "ws")
    s = ingest([tmp_path / "src"], ws, CFG)
    assert s.cases == 1 and s.labeled_cases == 0
    assert {q["reason"] for q in Catalog(ws.catalog_path).quarantine()} == {"label_unmatched"}


def test_original_series_named_like_a_mask_stays_an_image(tmp_path: Path) -> None:
    dss, _ = ct_slices(n=3, description="ROI localiser")
    write(dss, tmp_path / "src")
    ws = Workspace.at(tmp_path / "ws")
    s = ingest([tmp_path / "src"], ws, CFG)
    assert s.cases == 1 and s.quarantined == 0


def test_mask_series_with_image_content_is_rejected(tmp_path: Path) -> None:
    t1, _ = ct_slices(n=4, description="T1post", modality="MR", intercept=0.0)
    noise = np.random.default_rng(0).integers(0, 1000, size=(4, 8, 10))
    write(t1, tmp_path / "src" / "t1")
    write(_mask_series(t1, noise), tmp_path / "src" / "mask")
    ws = Workspace.at(tmp_path / "ws")
    s = ingest([tmp_path / "src"], ws, CFG)
    assert s.cases == 1 and s.labeled_cases == 0
    cat = Catalog(ws.catalog_path)
    assert {q["reason"] for q in cat.quarantine()} == {"label_not_mask"}
    (mask_row,) = [r for r in cat.series_table() if r["kind"] == "mask"]
    assert (mask_row["status"], mask_row["reason"]) == ("quarantined", "label_not_mask")
