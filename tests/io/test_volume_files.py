"""NIfTI / NRRD image+label pairs and MSD / nnU-Net raw dataset folders."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import nibabel as nib
import nrrd
import numpy as np
import pytest
import SimpleITK as sitk
from numpy.typing import NDArray

from medseg.config import IngestConfig
from medseg.deid import keyed_hash
from medseg.geometry import Geometry
from medseg.ingest.export import export_nifti
from medseg.ingest.run import ingest
from medseg.io.catalog import Catalog
from medseg.io.volume_files import read_dataset_json, read_volume, read_volume_header
from medseg.io.volume_store import read_case
from medseg.workspace import Workspace

KEY = "volume-secret"
CFG = IngestConfig(deid_secret=KEY, files_per_batch=8)


def _sitk_geometry(path: Path) -> tuple[NDArray[Any], Geometry]:
    """Independent reference: SimpleITK's array (z, y, x) and LPS geometry of a file."""
    img = sitk.ReadImage(str(path))
    d = np.asarray(img.GetDirection()).reshape(3, 3)  # columns: x, y, z axes
    return sitk.GetArrayFromImage(img), Geometry.create(
        spacing=img.GetSpacing()[::-1], origin=img.GetOrigin(), direction=d[:, ::-1]
    )


def _assert_same_geometry(a: Geometry, b: Geometry) -> None:
    np.testing.assert_allclose(a.spacing, b.spacing, atol=1e-4)
    np.testing.assert_allclose(a.origin, b.origin, atol=1e-3)
    np.testing.assert_allclose(a.direction_matrix, b.direction_matrix, atol=1e-5)


def _oblique_affine(spacing: tuple[float, float, float], origin: tuple[float, float, float]) -> NDArray[np.float64]:
    a = np.radians(15.0)
    rot = np.array([[np.cos(a), -np.sin(a), 0.0], [np.sin(a), np.cos(a), 0.0], [0.0, 0.0, 1.0]])
    aff = np.eye(4)
    aff[:3, :3] = rot * np.asarray(spacing)[None, :]
    aff[:3, 3] = origin
    return aff


def _nii(path: Path, data_xyz: NDArray[Any], affine: NDArray[np.float64]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = nib.Nifti1Image(data_xyz, affine)
    img.set_sform(affine, code=1)
    img.set_qform(affine, code=1)
    nib.save(img, str(path))
    return path


def test_dataset_json_msd_and_nnunet_v2(tmp_path: Path) -> None:
    msd = tmp_path / "msd" / "dataset.json"
    msd.parent.mkdir()
    msd.write_text(
        json.dumps({"name": "Spleen", "modality": {"0": "CT"}, "labels": {"0": "background", "1": "spleen"}})
    )
    v2 = tmp_path / "v2" / "dataset.json"
    v2.parent.mkdir()
    v2.write_text(
        json.dumps(
            {
                "channel_names": {"0": "T2", "1": "ADC"},
                "labels": {"background": 0, "PZ": 1, "TZ": 2},
                "file_ending": ".nii.gz",
            }
        )
    )
    assert read_dataset_json(msd) == {
        "layout": "msd",
        "name": "Spleen",
        "modality": "CT",
        "channels": {"0": "CT"},
        "labels": {"1": "spleen"},
        "file_ending": "",
    }
    info = read_dataset_json(v2)
    assert info["modality"] == "MR" and info["labels"] == {"1": "PZ", "2": "TZ"} and info["file_ending"] == ".nii.gz"
    assert info["layout"] == "nnunet_v2"


def test_nrrd_in_ras_space_matches_simpleitk(tmp_path: Path) -> None:
    data = np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6)  # file axes (a0, a1, a2)
    dirs = np.array([[0.0, 0.9, 0.0], [-1.1, 0.0, 0.0], [0.0, 0.0, 2.5]])
    hdr = {
        "space": "right-anterior-superior",
        "space directions": dirs,
        "space origin": np.array([10.0, -20.0, 5.0]),
        "kinds": ["domain"] * 3,
    }
    nrrd.write(str(tmp_path / "x.nrrd"), data, hdr)
    arr, g = read_volume(tmp_path / "x.nrrd")
    ref, ref_g = _sitk_geometry(tmp_path / "x.nrrd")
    np.testing.assert_array_equal(arr, ref)
    _assert_same_geometry(g, ref_g)
    assert read_volume_header(tmp_path / "x.nrrd")["shape"] == [6, 5, 4]


def test_msd_and_nnunet_datasets_ingest_case_by_case(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    v2 = tmp_path / "src" / "Dataset001_Test"
    v2.mkdir(parents=True)
    (v2 / "dataset.json").write_text(
        json.dumps(
            {
                "channel_names": {"0": "CT"},
                "labels": {"background": 0, "organ": 1, "lesion": 2},
                "numTraining": 2,
                "file_ending": ".nii.gz",
            }
        )
    )
    aff = _oblique_affine((0.8, 0.8, 2.0), (-50.0, 30.0, 12.0))
    img_a = rng.integers(-1000, 1000, (12, 10, 6)).astype(np.int16)
    lab_a = np.zeros((12, 10, 6), np.uint8)
    lab_a[3:7, 2:5, 1:4] = 1
    _nii(v2 / "imagesTr" / "case_a_0000.nii.gz", img_a, aff)
    _nii(v2 / "labelsTr" / "case_a.nii.gz", lab_a, aff)
    _nii(v2 / "imagesTr" / "case_b_0000.nii.gz", img_a, aff)
    _nii(v2 / "imagesTr" / "case_b_0001.nii.gz", img_a, aff)  # second channel: not used
    _nii(v2 / "labelsTr" / "case_b.nii.gz", lab_a[:, :, :5], aff)  # wrong shape
    _nii(v2 / "labelsTr" / "orphan.nii.gz", lab_a, aff)
    _nii(v2 / "imagesTs" / "case_c_0000.nii.gz", img_a.astype(np.float32) * 0.5, aff)
    msd = tmp_path / "src" / "Task02_Four"
    msd.mkdir()
    (msd / "dataset.json").write_text(
        json.dumps(
            {
                "name": "Four",
                "modality": {"0": "FLAIR", "1": "T1w"},
                "labels": {"0": "background", "1": "tumour"},
                "training": [{"image": "./imagesTr/four_0001.nii.gz", "label": "./labelsTr/four_0001.nii.gz"}],
            }
        )
    )
    four = rng.normal(size=(8, 9, 7, 2)).astype(np.float32)
    lab4 = np.zeros((8, 9, 7), np.uint8)
    lab4[2:4, 2:4, 2:4] = 1
    _nii(msd / "imagesTr" / "four_0001.nii.gz", four, np.diag([1.0, 1.0, 1.5, 1.0]))
    _nii(msd / "labelsTr" / "four_0001.nii.gz", lab4, np.diag([1.0, 1.0, 1.5, 1.0]))

    ws = Workspace.at(tmp_path / "ws")
    s = ingest([tmp_path / "src"], ws, CFG)
    assert (s.cases, s.labeled_cases) == (4, 2)
    cat = Catalog(ws.catalog_path)
    cid = keyed_hash(KEY, "file:Dataset001_Test/imagesTr/case_a_0000.nii.gz", prefix="case_")
    rec = cat.case(cid)
    assert rec.modality == "CT" and rec.label_names == {1: "organ", 2: "lesion"}  # dataset-wide names
    case = read_case(rec.volume_path)
    np.testing.assert_array_equal(case.image, img_a.transpose(2, 1, 0))
    np.testing.assert_array_equal(case.labels["gt"], lab_a.transpose(2, 1, 0))
    _assert_same_geometry(case.geometry, Geometry.from_nifti_affine(aff))
    _assert_same_geometry(case.geometry, _sitk_geometry(v2 / "imagesTr" / "case_a_0000.nii.gz")[1])
    out = export_nifti(ws, cid, tmp_path / "a.nii.gz")
    np.testing.assert_allclose(nib.load(str(out)).affine, aff, atol=1e-4)

    reasons = {q["path"].split("src/", 1)[1]: q["reason"] for q in cat.quarantine()}
    assert reasons == {
        "Dataset001_Test/imagesTr/case_b_0001.nii.gz": "extra_channel",
        "Dataset001_Test/labelsTr/case_b.nii.gz": "label_mismatch",
        "Dataset001_Test/labelsTr/orphan.nii.gz": "label_unmatched",
    }
    by_desc = {c.description: c for c in cat.cases()}
    assert not by_desc["case_b_0000"].has_labels and not by_desc["case_c_0000"].has_labels
    assert read_case(by_desc["case_c_0000"].volume_path).image.dtype == np.float32
    four_case = read_case(by_desc["four_0001"].volume_path)
    assert by_desc["four_0001"].modality == "MR" and by_desc["four_0001"].label_names == {1: "tumour"}
    np.testing.assert_array_equal(four_case.image, four[..., 0].transpose(2, 1, 0))
    assert four_case.source["n_channels"] == 2 and four_case.source["dataset"] == "Four"

    again = ingest([tmp_path / "src"], ws, CFG)
    assert (again.files_indexed, again.series_ingested, again.series_unchanged) == (0, 0, 4)
    _nii(v2 / "labelsTr" / "case_b.nii.gz", lab_a, aff)  # fixed label: only case_b is rebuilt
    third = ingest([tmp_path / "src"], ws, CFG)
    assert (third.series_ingested, third.labeled_cases) == (1, 3)


def test_pyradiomics_nrrd_pairs(real_data: Path, tmp_path: Path) -> None:
    folder = real_data / "pyradiomics"
    ws = Workspace.at(tmp_path / "ws")
    s = ingest([folder], ws, CFG)
    assert (s.cases, s.labeled_cases) == (3, 3)
    cat = Catalog(ws.catalog_path)
    for rec in cat.cases():
        name = rec.description.removesuffix("_image")
        case = read_case(rec.volume_path)
        ref_img, ref_g = _sitk_geometry(folder / f"{name}_image.nrrd")
        np.testing.assert_array_equal(case.image, ref_img)
        _assert_same_geometry(case.geometry, ref_g)
        lab, _ = nrrd.read(str(folder / f"{name}_label.nrrd"))
        np.testing.assert_array_equal(case.labels["gt"], (lab.transpose(2, 1, 0) > 0).astype(np.uint8))
        assert rec.label_names == {1: "foreground"} and case.source["label_source"] == "label_file"
        assert rec.case_id == keyed_hash(KEY, f"file:pyradiomics/{name}_image.nrrd", prefix="case_")


def test_ivadomed_bids_labels(real_data: Path, tmp_path: Path) -> None:
    folder = real_data / "ivadomed-data-testing"
    ws = Workspace.at(tmp_path / "ws")
    s = ingest([folder], ws, CFG)
    cat = Catalog(ws.catalog_path)
    by_desc = {c.description: c for c in cat.cases()}
    assert set(by_desc) == {"sub-unf01_T1w", "sub-unf01_T2w", "sub-unf01_T2star", "sub-spleen2_ct"}
    assert s.labeled_cases == 4
    spleen = by_desc["sub-spleen2_ct"]
    assert spleen.modality == "CT" and by_desc["sub-unf01_T2w"].modality == "MR"
    case = read_case(spleen.volume_path)
    ref = nib.load(str(folder / "ct_scan/derivatives/labels/sub-spleen2/ct/sub-spleen2_ct_seg-manual.nii.gz"))
    np.testing.assert_array_equal(case.labels["gt"], np.asanyarray(ref.dataobj).transpose(2, 1, 0))
    assert case.image.dtype == np.int16  # float32 file holding integral HU
    assert len({by_desc[d].patient_key for d in ("sub-unf01_T1w", "sub-unf01_T2w", "sub-unf01_T2star")}) == 1
    q = {Path(x["path"]).name: x["reason"] for x in cat.quarantine()}
    # the dummy lesion labels were resampled (affine differs from the images'); the disc label is a 2nd label
    assert q["sub-unf01_T1w_lesion-manual.nii.gz"] == "label_mismatch"
    assert q["sub-unf01_T2w_labels-disc-manual.nii.gz"] == "label_ambiguous"
    for d in ("T1w", "T2w", "T2star"):
        lab = read_case(by_desc[f"sub-unf01_{d}"].volume_path).labels["gt"]
        ref = nib.load(str(folder / f"derivatives/labels/sub-unf01/anat/sub-unf01_{d}_seg-manual.nii.gz"))
        np.testing.assert_array_equal(lab, np.asanyarray(ref.dataobj).transpose(2, 1, 0).astype(np.uint8))


def test_itksnap_label_descriptions_name_the_values(real_data: Path, tmp_path: Path) -> None:
    folder = real_data / "itksnap-mricrop"
    ws = Workspace.at(tmp_path / "ws")
    s = ingest([folder], ws, CFG)
    assert (s.cases, s.labeled_cases) == (1, 1)
    (rec,) = Catalog(ws.catalog_path).cases()
    assert rec.label_names == {
        1: "vent-lat",
        2: "vent-3rd",
        3: "vent-4th",
        4: "hippo-R",
        5: "hippo-L",
        6: "vent-temp",
        7: "caudates",
        8: "corpus-callosum",
    }
    case = read_case(rec.volume_path)
    ref, ref_g = _sitk_geometry(folder / "MRIcrop-seg.nii.gz")
    np.testing.assert_array_equal(case.labels["gt"], ref)
    _assert_same_geometry(case.geometry, ref_g)


@pytest.mark.parametrize("bad", ["rgb", "2d", "garbage"])
def test_unusable_volume_files_are_quarantined(tmp_path: Path, bad: str) -> None:
    src = tmp_path / "src"
    src.mkdir()
    if bad == "rgb":
        rgb = np.zeros((4, 4, 3), dtype=[("R", "u1"), ("G", "u1"), ("B", "u1")])
        nib.save(nib.Nifti1Image(rgb, np.eye(4)), str(src / "x.nii.gz"))
    elif bad == "2d":
        nib.save(nib.Nifti1Image(np.zeros((4, 4), np.int16), np.eye(4)), str(src / "x.nii.gz"))
    else:
        (src / "x.nii.gz").write_bytes(b"\x1f\x8b not really gzip")
    ws = Workspace.at(tmp_path / "ws")
    s = ingest([src], ws, CFG)
    assert s.cases == 0
    (q,) = Catalog(ws.catalog_path).quarantine()
    assert q["reason"] == "volume_unreadable" and "x.nii.gz" in q["message"]
