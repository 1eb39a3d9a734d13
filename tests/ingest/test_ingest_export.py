"""NIfTI export of ingested cases, de-identification hash, catalog schema guard."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from dicom_factory import ct_slices, seg_for, write

from medseg.config import IngestConfig
from medseg.deid import keyed_hash
from medseg.ingest.export import export_nifti
from medseg.ingest.run import ingest
from medseg.io.catalog import Catalog, CatalogSchemaError
from medseg.io.volume_store import read_case
from medseg.workspace import Workspace


def _load(path: Path) -> nib.Nifti1Image:
    img = nib.load(str(path))
    assert isinstance(img, nib.Nifti1Image)
    return img


def test_export_by_series_uid_and_case_id(tmp_path: Path) -> None:
    a = np.radians(15)
    row, col = [np.cos(a), np.sin(a), 0.0], [0.0, 0.0, -1.0]
    dss, stored = ct_slices(n=4, iop=(*row, *col), step=2.0)
    write(dss, tmp_path / "src")
    masks = np.zeros((4, 8, 10, 1), bool)
    masks[2, 3, 4] = True
    seg_for(dss, masks).save_as(tmp_path / "src" / "seg")
    ws = Workspace.at(tmp_path / "ws")
    ingest([tmp_path / "src"], ws, IngestConfig(deid_secret="export-secret", files_per_batch=8))
    rec = Catalog(ws.catalog_path).case(dss[0].SeriesInstanceUID)
    case = read_case(rec.volume_path)

    img = _load(export_nifti(ws, dss[0].SeriesInstanceUID, tmp_path / "img.nii.gz"))
    affine = np.asarray(img.affine, float)
    np.testing.assert_allclose(affine, case.geometry.nifti_affine(), atol=1e-5)
    np.testing.assert_array_equal(np.asanyarray(img.dataobj), case.image.transpose(2, 1, 0))
    np.testing.assert_array_equal(np.asanyarray(img.dataobj), (stored - 1024).transpose(2, 1, 0))
    # the first voxel sits at the first slice's ImagePositionPatient (LPS -> RAS)
    ipp = np.asarray(dss[0].ImagePositionPatient, float)
    np.testing.assert_allclose(affine[:3, 3], [-ipp[0], -ipp[1], ipp[2]], atol=1e-4)

    out_dir = tmp_path / "out"
    out_dir.mkdir()
    lab_path = export_nifti(ws, rec.case_id, out_dir, label="gt")
    assert lab_path.name == f"{rec.case_id}_gt.nii.gz"
    lab = np.asanyarray(_load(lab_path).dataobj)
    assert lab[4, 3, 2] == 1 and lab.sum() == 1
    with pytest.raises(KeyError, match="no ingested case"):
        export_nifti(ws, "1.2.3.4", tmp_path / "x.nii.gz")
    with pytest.raises(KeyError, match="no label"):
        export_nifti(ws, rec.case_id, tmp_path / "x.nii.gz", label="pred")


def test_keyed_hash_is_stable_keyed_and_prefixed() -> None:
    a = keyed_hash("secret-one", "1.2.3", prefix="case_")
    assert a == keyed_hash("secret-one", "1.2.3", prefix="case_")
    assert a.startswith("case_") and len(a) == len("case_") + 16
    assert a != keyed_hash("secret-two", "1.2.3", prefix="case_")
    import hashlib
    import hmac

    assert keyed_hash("k", "v", length=64) == hmac.new(b"k", b"v", hashlib.sha256).hexdigest()
    with pytest.raises(ValueError):
        keyed_hash("", "v")


def test_catalog_refuses_unknown_schema(tmp_path: Path) -> None:
    path = tmp_path / "catalog.sqlite"
    Catalog(path)
    with sqlite3.connect(path) as con:
        con.execute("PRAGMA user_version = 99")
    with pytest.raises(CatalogSchemaError, match="schema 99"):
        Catalog(path)
