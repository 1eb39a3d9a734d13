"""NIfTI-1 read/write with medseg geometry (arrays are ``(z, y, x)``, files are ``(x, y, z)`` RAS)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
from numpy.typing import NDArray

from medseg.geometry import Geometry
from medseg.io.reasons import IngestError
from medseg.io.volume_files import nifti_volume


def write_nifti(path: Path, array_zyx: NDArray[Any], geometry: Geometry) -> Path:
    """Write a ``(z, y, x)`` array as NIfTI with ``affine == geometry.nifti_affine()``.

    The array is stored transposed to ``(x, y, z)`` (what viewers expect). The sform holds the
    exact affine (code 1 = scanner); the qform is set too when the direction is orthogonal
    (a qform cannot represent the shear of a gantry-tilted stack).

    Args:
        path: Output file (``.nii`` or ``.nii.gz``); parent folders are created.
        array_zyx: 3D array indexed ``[slice, row, column]``.
        geometry: Geometry of ``array_zyx``.

    Returns:
        ``path``.
    """
    arr = np.asarray(array_zyx)
    if arr.ndim != 3:
        raise ValueError(f"write_nifti expects a 3D (z, y, x) array, got shape {arr.shape} for {path}")
    if arr.dtype == np.bool_:
        arr = arr.astype(np.uint8)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    affine = geometry.nifti_affine()
    img = nib.Nifti1Image(np.ascontiguousarray(arr.transpose(2, 1, 0)), affine)
    img.set_sform(affine, code=1)
    d = geometry.direction_matrix
    if np.allclose(d.T @ d, np.eye(3), atol=1e-4):
        img.set_qform(affine, code=1)
    else:
        img.set_qform(None, code=0)
    img.header.set_xyzt_units(xyz="mm")
    nib.save(img, str(path))
    return path


def read_nifti(path: Path) -> tuple[NDArray[Any], Geometry]:
    """Read a NIfTI file into a ``(z, y, x)`` array and its geometry (inverse of :func:`write_nifti`).

    Works for any NIfTI (from other tools too): the best affine nibabel selects (sform, else
    qform) is converted with :meth:`Geometry.from_nifti_affine`, as ingest reads NIfTI
    (:func:`medseg.io.volume_files.nifti_volume`). Scaled data (``scl_slope``) is returned as float.

    Raises:
        ValueError: not a 3D NIfTI image, or its affine is not a valid geometry.
    """
    img = nib.load(str(path))
    if not isinstance(img, nib.Nifti1Image | nib.Nifti2Image):
        raise ValueError(f"{path} is not a NIfTI image (nibabel read it as {type(img).__name__})")
    shape = tuple(int(s) for s in img.shape)
    if not (len(shape) == 3 or (len(shape) == 4 and shape[3] == 1)):
        raise ValueError(f"{path}: expected a 3D NIfTI image, got shape {shape}")
    try:
        data, geometry = nifti_volume(img, Path(path))
    except IngestError as exc:
        raise ValueError(str(exc)) from exc
    return np.ascontiguousarray(data), geometry
