"""Ingest real scanner data (../shared/data/real): geometry vs dicom2nifti, failure codes, robustness."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import nibabel as nib
import nrrd
import numpy as np
import pytest
from pydicom import dcmread

from medseg.config import IngestConfig
from medseg.ingest.build import label_refs
from medseg.ingest.export import export_nifti
from medseg.ingest.run import ingest
from medseg.io.catalog import Catalog
from medseg.io.volume_store import read_case
from medseg.workspace import Workspace


def _load(path: Path) -> nib.Nifti1Image:
    img = nib.load(str(path))
    assert isinstance(img, nib.Nifti1Image)
    return img


pytestmark = pytest.mark.realdata
KEY = "realdata-secret"
CFG = IngestConfig(deid_secret=KEY, files_per_batch=64)

D2N_CASES = [
    "anatomical/001",
    "anatomical/001_implicit",
    "ge/anatomical/001",
    "generic/anatomical/001",
    "generic/anatomical/002_non_isotropic",
    "generic/compressed/001",
    "generic/compressed_j2k/001",
    "generic/compressed_jpeg/001",
    "generic/compressed_jpegls/001",
    "generic/compressed_rle/001",
    "hitachi/anatomical/001",
    "hyperfine/anatomical/001",
    "philips/anatomical/001",
    "philips_enhanced/anatomical/001",
    "siemens/anatomical/001",
    "siemens_multiframe/anatomical/001",
]


@pytest.mark.parametrize("case", D2N_CASES)
def test_export_matches_dicom2nifti_ground_truth(real_data: Path, tmp_path: Path, case: str) -> None:
    """Same voxels at the same RAS positions as dicom2nifti (up to its axis order/flip)."""
    folder = real_data / "dicom2nifti" / case
    ws = Workspace.at(tmp_path / "ws")
    s = ingest([folder], ws, CFG)
    assert s.cases == 1, Catalog(ws.catalog_path).quarantine()
    ours = _load(export_nifti(ws, Catalog(ws.catalog_path).cases()[0].case_id, tmp_path / "o.nii.gz"))
    gt = _load(folder.parent / f"{folder.name}_ground_truth.nii.gz")
    od = np.asanyarray(ours.dataobj).astype(np.float64)
    gd = np.asanyarray(gt.dataobj).reshape(gt.shape[:3]).astype(np.float64)
    # gt voxel index -> our voxel index must be a signed axis permutation plus an integer shift
    m = np.linalg.inv(ours.affine) @ gt.affine
    perm = np.round(m[:3, :3])
    shift = np.round(m[:3, 3])
    np.testing.assert_allclose(m[:3, :3], perm, atol=1e-3)
    np.testing.assert_allclose(m[:3, 3], shift, atol=1e-2)
    idx = np.indices(gd.shape).reshape(3, -1)
    mapped = (perm @ idx + shift[:, None]).astype(int)
    assert np.all(mapped >= 0) and np.all(mapped < np.array(od.shape)[:, None])
    np.testing.assert_allclose(od[tuple(mapped)], gd.reshape(-1), rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("gantrytilting", "gantry_tilt"),
        ("notavolume", "duplicate_positions"),
        ("slicecount", "too_few_slices"),
        ("sliceincrement", "slice_gap"),
        ("sliceorientation", "inconsistent_orientation"),
    ],
)
def test_dicom2nifti_failing_series_are_quarantined(real_data: Path, tmp_path: Path, case: str, reason: str) -> None:
    folder = real_data / "dicom2nifti" / "failing" / case
    ws = Workspace.at(tmp_path / "ws")
    ingest([folder], ws, CFG)
    # dicom2nifti keeps its reference NIfTI in some of these folders: those are NIfTI cases, the DICOM is not
    assert [c.series_uid for c in Catalog(ws.catalog_path).cases() if not c.series_uid.startswith("file:")] == []
    q = Catalog(ws.catalog_path).quarantine()
    dicoms = [q_ for q_ in q if q_["reason"] != "not_dicom"]
    assert dicoms and {x["reason"] for x in dicoms} == {reason}
    files = [p for p in folder.rglob("*") if p.is_file() and not p.name.endswith(".nii.gz")]
    assert {x["path"] for x in dicoms} == {str(p) for p in files}  # every file named


def test_robustness_archives_every_file_ingested_or_quarantined(real_data: Path, tmp_path: Path) -> None:
    sources = [real_data / "pydicom-data", real_data / "dicom-edge-cases", real_data / "dicom2nifti"]
    ws = Workspace.at(tmp_path / "ws")
    s = ingest(sources, ws, CFG)
    all_files = {str(p) for src in sources for p in src.rglob("*") if p.is_file()}
    assert s.files_seen == len(all_files)
    cat = Catalog(ws.catalog_path)
    quarantined = {q["path"] for q in cat.quarantine()}
    assert not [q for q in cat.quarantine() if q["reason"] == "internal_error"]
    with sqlite3.connect(ws.catalog_path) as con:
        good_series = {
            r[0] for r in con.execute("SELECT series_uid FROM series WHERE status IN ('ingested', 'label_source')")
        }
        in_cases = {
            r[0] for r in con.execute("SELECT path, series_uid FROM files WHERE status = 'ok'") if r[1] in good_series
        }
    assert all_files == in_cases | quarantined
    # the compressed copies share one SeriesInstanceUID: one case, the other copies are duplicates
    compressed_uid = "1.2.826.0.1.3680043.2.1143.8924.4.2.20170526.1.298244257421"
    uid = dcmread(real_data / "dicom2nifti/generic/compressed/001/IM-0001-0001-0001.dcm").SeriesInstanceUID
    assert uid.startswith(compressed_uid[:20])
    rec = cat.case(uid)
    assert rec.shape == (4, 256, 256)
    dups = [q for q in cat.quarantine() if q["reason"] == "duplicate_instance" and q["series"] == uid]
    assert len(dups) == 16
    reasons = {q["reason"] for q in cat.quarantine()}
    assert {
        "not_dicom",
        "too_few_slices",
        "no_geometry",
        "color_image",
        "gantry_tilt",
        "slice_gap",
    } <= reasons


def test_tcia_mask_series_label_their_t1post(real_data: Path, tmp_path: Path) -> None:
    ws = Workspace.at(tmp_path / "ws")
    s = ingest([real_data / "tcia-brain-tumor-progression"], ws, CFG)
    assert s.cases == 8 and s.labeled_cases == 4  # 6 PGBM-001 series (3 per study) + 2 PGBM-003 T1post
    cat = Catalog(ws.catalog_path)
    labeled = [c for c in cat.cases() if c.has_labels]
    assert {c.description for c in labeled} == {"T1post"}
    for c in labeled:
        assert c.label_names == {1: "tumor"} and c.modality == "MR"
        case = read_case(c.volume_path)
        frac = float(case.labels["gt"].mean())
        assert 0.0001 < frac < 0.05  # a tumour, not the background
        assert case.source["label_source"] == "mask_series"
        (mask_ref,) = case.source["label_refs"]  # the store keeps a keyed stand-in of the mask's UID
        mask_files = [
            p
            for p in (real_data / "tcia-brain-tumor-progression").rglob("*")
            if p.is_file()
            and "MaskTumor" in str(p.parent)
            and label_refs(KEY, [dcmread(p, stop_before_pixels=True).SeriesInstanceUID]) == [mask_ref]
        ]
        assert len(mask_files) == c.shape[0]
        assert int(case.labels["gt"].sum()) == sum(int(np.count_nonzero(dcmread(p).pixel_array)) for p in mask_files)
    masks = [r for r in cat.series_table() if r["kind"] == "mask"]
    assert len(masks) == 4 and {r["status"] for r in masks} == {"label_source"}


def test_dcmqi_liver_seg_matches_reference_labelmap(real_data: Path, tmp_path: Path) -> None:
    seg_dir = real_data / "dcmqi-seg" / "segmentations"
    ws = Workspace.at(tmp_path / "ws")
    src = tmp_path / "src"
    src.mkdir()
    (src / "ct").symlink_to(seg_dir / "ct-3slice")
    (src / "liver.dcm").symlink_to(seg_dir / "liver.dcm")
    ingest([src], ws, CFG)
    (rec,) = Catalog(ws.catalog_path).cases()
    assert rec.label_names == {1: "Liver"}
    case = read_case(rec.volume_path)
    ref, hdr = nrrd.read(str(seg_dir / "liver_seg.nrrd"))
    np.testing.assert_array_equal(case.labels["gt"], ref.transpose(2, 1, 0).astype(np.uint8))
    np.testing.assert_allclose(case.geometry.origin, hdr["space origin"], atol=1e-4)
