"""Tests for medseg.demo.dicom_series: geometry and pixel round trips through real DICOM files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest

from medseg.demo.dicom_series import (
    ENCODINGS,
    PixelEncoding,
    SeriesIdentity,
    build_ct_slices,
    write_ct_series,
)
from medseg.geometry import AXIAL_DIRECTION, Geometry


def _rotation(axis, angle_deg: float) -> np.ndarray:
    a = np.asarray(axis, float) / np.linalg.norm(axis)
    k = np.array([[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]])
    t = np.deg2rad(angle_deg)
    return np.eye(3) + np.sin(t) * k + (1 - np.cos(t)) * k @ k


def _identity() -> SeriesIdentity:
    return SeriesIdentity(
        patient_id="12345678",
        patient_name="DOE^JANE",
        patient_birth_date="19600101",
        patient_sex="F",
        accession_number="A1",
        study_instance_uid="1.2.3.4",
        study_id="1",
        study_date="20200101",
        study_time="090000",
        study_description="CT",
        series_instance_uid="1.2.3.4.5",
        series_number=2,
        series_description="test",
        frame_of_reference_uid="1.2.3.4.6",
    )


def _geometry(oblique: bool) -> Geometry:
    d = np.asarray(AXIAL_DIRECTION, float)
    if oblique:
        d = _rotation([0.3, -1.0, 0.4], 21.0) @ d
    return Geometry.create(spacing=(3.5, 0.8, 1.3), origin=(-40.25, 12.5, -310.0), direction=d)


def _write(tmp_path: Path, oblique: bool, encoding: PixelEncoding) -> tuple[np.ndarray, Geometry, list[Path]]:
    rng = np.random.default_rng(5)
    hu = rng.integers(-1024, 3072, size=(6, 10, 14)).astype(np.int16)
    hu[0, 0, :3] = (-1024, 3071, 0)
    geometry = _geometry(oblique)
    datasets = build_ct_slices(hu, geometry, _identity(), encoding, ["test"])
    return hu, geometry, write_ct_series(datasets, tmp_path / "series")


def _geometry_from_files(paths: list[Path]) -> tuple[list[pydicom.Dataset], np.ndarray]:
    """Independent reader: datasets sorted by IPP projected on the IOP normal, and that normal."""
    datasets: list[pydicom.Dataset] = [pydicom.dcmread(p) for p in paths]
    iop = np.asarray(datasets[0].ImageOrientationPatient, float)
    normal = np.cross(iop[:3], iop[3:])
    datasets.sort(key=lambda ds: float(np.asarray(ds.ImagePositionPatient, float) @ normal))
    return datasets, normal


@pytest.mark.parametrize("oblique", [False, True])
def test_positions_match_geometry_index_to_lps(tmp_path: Path, oblique: bool) -> None:
    _, geometry, paths = _write(tmp_path, oblique, ENCODINGS[0])
    datasets, _ = _geometry_from_files(paths)
    for k, j, i in [(0, 0, 0), (5, 9, 13), (2, 3, 7), (4, 0, 11)]:
        ds = datasets[k]
        ipp = np.asarray(ds.ImagePositionPatient, float)
        iop = np.asarray(ds.ImageOrientationPatient, float)
        row_spacing, col_spacing = (float(v) for v in ds.PixelSpacing)
        # DICOM PS3.3 C.7.6.2.1.1: P = S + X * Δi * i + Y * Δj * j (X = IOP[0:3] along a row, Y = IOP[3:6])
        lps = ipp + iop[:3] * col_spacing * i + iop[3:] * row_spacing * j
        np.testing.assert_allclose(lps, geometry.index_to_lps(np.array([k, j, i])), atol=1e-6)
    assert float(datasets[0].SliceThickness) == pytest.approx(3.5)
    assert float(datasets[0].SpacingBetweenSlices) == pytest.approx(3.5)
    axial = np.allclose(np.asarray(datasets[0].ImageOrientationPatient, float), [1, 0, 0, 0, 1, 0])
    assert axial is (not oblique)


@pytest.mark.parametrize("encoding", ENCODINGS, ids=lambda e: e.name)
def test_pixels_round_trip_exactly(tmp_path: Path, encoding: PixelEncoding) -> None:
    hu, _, paths = _write(tmp_path, True, encoding)
    datasets, _ = _geometry_from_files(paths[::-1])
    volume = np.stack(
        [ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept) for ds in datasets]
    )
    np.testing.assert_array_equal(volume, hu.astype(float))
    ds = datasets[0]
    assert ds.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
    assert ds.SOPClassUID == pydicom.uid.CTImageStorage
    assert (ds.BitsAllocated, ds.BitsStored, ds.PixelRepresentation) == (
        16,
        encoding.bits_stored,
        int(encoding.signed),
    )
    assert [int(d.InstanceNumber) for d in datasets] == list(range(1, 7))
    assert ds.PatientName == "DOE^JANE" and ds.Modality == "CT"


def test_encoding_refuses_out_of_range_values() -> None:
    with pytest.raises(ValueError, match="does not fit"):
        PixelEncoding(signed=False, bits_stored=12, intercept=-1024).encode(np.array([3072], np.int16))
    with pytest.raises(ValueError, match="does not fit"):
        PixelEncoding(signed=False, bits_stored=12, intercept=-1024).encode(np.array([-1025], np.int16))


def test_left_handed_direction_is_refused() -> None:
    d = np.asarray(AXIAL_DIRECTION, float).copy()
    d[:, 0] *= -1  # slices stacked against the DICOM normal
    geometry = Geometry.create(spacing=(1, 1, 1), origin=(0, 0, 0), direction=d)
    with pytest.raises(ValueError, match="cross"):
        build_ct_slices(np.zeros((2, 3, 3), np.int16), geometry, _identity(), ENCODINGS[0], ["x"])
