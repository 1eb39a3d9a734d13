"""Label sources: DICOM SEG placement/thresholds, mask image series, pixel rescaling."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from dicom_factory import ct_slices, seg_for, write
from numpy.typing import NDArray
from pydicom.dataset import Dataset
from pydicom.uid import UID

from medseg.config import IngestConfig
from medseg.geometry import Geometry
from medseg.ingest.headers import read_header
from medseg.ingest.pixels import read_stack
from medseg.ingest.reasons import IngestError, Reason
from medseg.ingest.run import ingest
from medseg.ingest.seg import seg_to_label
from medseg.ingest.stacks import Stack, assemble_series
from medseg.io.catalog import Catalog
from medseg.io.volume_store import read_case
from medseg.workspace import Workspace

CFG = IngestConfig(deid_secret="labels-secret", files_per_batch=16)


def _geom(st: Stack) -> Geometry:
    assert st.geometry is not None
    return st.geometry


def _stack(paths: list[Path]) -> Stack:
    (st,) = assemble_series([read_header(p, "x-secret") for p in paths]).stacks
    assert st.ok
    return st


def test_fractional_seg_is_thresholded_at_half(tmp_path: Path) -> None:
    dss, _ = ct_slices(n=3)
    paths = write(dss, tmp_path / "ct")
    frac = np.zeros((3, 8, 10, 1), np.float32)
    frac[1, 0, 0, 0] = 0.3
    frac[1, 0, 1, 0] = 0.7
    frac[2, 5, 5, 0] = 1.0
    seg_for(dss, frac, fractional=True).save_as(tmp_path / "seg")
    st = _stack(paths)
    label, names = seg_to_label(str(tmp_path / "seg"), _geom(st), st.frames)
    assert names == {1: "organ"}
    assert label.dtype == np.uint8
    assert set(zip(*np.nonzero(label), strict=True)) == {(1, 0, 1), (2, 5, 5)}


def test_partial_seg_lands_on_the_right_slices(tmp_path: Path) -> None:
    dss, _ = ct_slices(n=6, step=1.5)
    paths = write(dss, tmp_path / "ct")
    masks = np.zeros((2, 8, 10, 1), bool)
    masks[0, 1, 1] = masks[1, 2, 2] = True
    seg_for([dss[4], dss[1]], masks).save_as(tmp_path / "seg")  # only slices 4 and 1, in that order
    st = _stack(paths)
    label, _ = seg_to_label(str(tmp_path / "seg"), _geom(st), st.frames)
    assert set(zip(*np.nonzero(label), strict=True)) == {(4, 1, 1), (1, 2, 2)}


def test_seg_off_grid_is_a_mismatch(tmp_path: Path) -> None:
    dss, _ = ct_slices(n=3)
    paths = write(dss, tmp_path / "ct")
    shifted, _ = ct_slices(n=3, origin=(-10.3, -20.0, 30.0))  # 0.3 mm = 0.5 column: between pixels
    seg_for(shifted, np.ones((3, 8, 10, 1), bool)).save_as(tmp_path / "seg")
    st = _stack(paths)
    with pytest.raises(IngestError) as exc:
        seg_to_label(str(tmp_path / "seg"), _geom(st), st.frames)
    assert exc.value.reason == Reason.SEG_MISMATCH


def test_rescale_to_float_when_slope_is_fractional(tmp_path: Path) -> None:
    dss, stored = ct_slices(n=3, slope=0.5, intercept=-3.25)
    st = _stack(write(dss, tmp_path))
    vol = read_stack(st.frames)
    assert vol.dtype == np.float32
    np.testing.assert_allclose(vol, stored * 0.5 - 3.25)


def test_integer_rescale_outside_int16_becomes_float(tmp_path: Path) -> None:
    dss, stored = ct_slices(n=3, slope=20.0, intercept=0.0)
    vol = read_stack(_stack(write(dss, tmp_path)).frames)
    assert vol.dtype == np.float32 and vol.max() == pytest.approx(stored.max() * 20.0)


def test_per_slice_rescale_and_unsigned_values_above_int16(tmp_path: Path) -> None:
    """Each slice keeps its own slope/intercept; uint16 values > 32767 shifted into range stay exact int16."""
    dss, _ = ct_slices(n=3, rows=4, cols=5)
    raw = np.random.default_rng(1).integers(30000, 65535, size=(3, 4, 5)).astype(np.uint16)
    scales = [(1.0, -32768.0), (1.0, -40000.0), (1.0, -33000.0)]
    for ds, r, (slope, inter) in zip(dss, raw, scales, strict=True):
        ds.PixelRepresentation, ds.PixelData = 0, r.tobytes()
        ds.RescaleSlope, ds.RescaleIntercept = slope, inter
    vol = read_stack(_stack(write(dss, tmp_path)).frames)
    want = np.stack([r.astype(np.int64) * s + i for r, (s, i) in zip(raw, scales, strict=True)])
    assert vol.dtype == np.int16
    np.testing.assert_array_equal(vol, want)
    dss[1].RescaleSlope = 0.25  # one fractional slope makes the whole volume float
    vol = read_stack(_stack(write(dss, tmp_path / "f")).frames)
    assert vol.dtype == np.float32
    np.testing.assert_allclose(vol[1], raw[1] * 0.25 - 40000.0)
    np.testing.assert_array_equal(vol[0], want[0])


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
