"""NIfTI round trip: (z, y, x) arrays, RAS affine from Geometry.nifti_affine()."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from medseg.geometry import Geometry
from medseg.io.nifti import read_nifti, write_nifti


def _load(path: Path) -> nib.Nifti1Image:
    img = nib.load(str(path))
    assert isinstance(img, nib.Nifti1Image)
    return img


def _oblique() -> Geometry:
    a = np.radians(25)
    d = np.array([[0.0, 0.0, 1.0], [np.sin(a), np.cos(a), 0.0], [np.cos(a), -np.sin(a), 0.0]]).T
    return Geometry.create((3.0, 0.75, 0.5), (10.0, -20.0, 5.5), d)


def test_round_trip_keeps_voxels_dtype_and_geometry(tmp_path: Path) -> None:
    g = _oblique()
    arr = np.arange(2 * 3 * 4, dtype=np.int16).reshape(2, 3, 4)
    path = write_nifti(tmp_path / "x.nii.gz", arr, g)
    back, g2 = read_nifti(path)
    assert back.dtype == np.int16
    np.testing.assert_array_equal(back, arr)
    np.testing.assert_allclose(g2.nifti_affine(), g.nifti_affine(), atol=1e-5)


def test_file_layout_is_xyz_with_ras_affine(tmp_path: Path) -> None:
    g = Geometry.create((2.0, 0.5, 0.25), (1.0, 2.0, 3.0))  # axial
    arr = np.zeros((2, 3, 4), np.float32)
    arr[1, 2, 3] = 7.0
    img = _load(write_nifti(tmp_path / "a.nii", arr, g))
    data = np.asanyarray(img.dataobj)
    assert data.shape == (4, 3, 2) and data[3, 2, 1] == 7.0
    np.testing.assert_allclose(np.asarray(img.affine, float), g.nifti_affine(), atol=1e-6)
    # voxel (i=3, j=2, k=1) in RAS = LPS of array index (1, 2, 3) with x, y negated
    lps = g.index_to_lps(np.array([1, 2, 3]))
    np.testing.assert_allclose(np.asarray(img.affine, float) @ [3, 2, 1, 1], [-lps[0], -lps[1], lps[2], 1], atol=1e-6)
    assert int(img.header.get_sform(coded=True)[1]) == 1 and int(img.header.get_qform(coded=True)[1]) == 1


def test_sheared_geometry_keeps_exact_sform(tmp_path: Path) -> None:
    u = np.array([0.0, 0.25, 1.0]) / np.linalg.norm([0.0, 0.25, 1.0])  # tilted stacking direction
    g = Geometry.create((1.0, 1.0, 1.0), (0, 0, 0), np.column_stack([u, [0, 1, 0], [1, 0, 0]]))
    img = _load(write_nifti(tmp_path / "s.nii.gz", np.zeros((2, 2, 2), np.uint8), g))
    np.testing.assert_allclose(np.asarray(img.get_sform(), float), g.nifti_affine(), atol=1e-6)
    assert int(img.header.get_qform(coded=True)[1]) == 0


def test_rejects_non_3d(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="3D"):
        write_nifti(tmp_path / "b.nii", np.zeros((2, 2)), Geometry.create((1, 1, 1), (0, 0, 0)))
