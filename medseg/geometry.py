"""Voxel-to-patient geometry of a 3D volume.

Array contract used everywhere in medseg:

* A volume is a numpy array indexed ``[k, j, i]`` = (slice, row, column), i.e. the DICOM
  stacking order. We call the axes ``(z, y, x)`` for short even for oblique volumes.
* ``spacing`` is given in *array axis order* (mm): ``(slice step, row spacing, column spacing)``.
* ``direction`` is a 3x3 matrix whose **column a** is the unit vector, in DICOM patient
  coordinates (LPS, mm), along which array axis ``a`` increases.
* ``origin`` is the LPS position (mm) of the centre of voxel ``[0, 0, 0]``.

So the LPS position of voxel index ``idx = (k, j, i)`` is::

    origin + direction @ (spacing * idx)

For a DICOM series sorted along the slice normal: direction[:, 0] is the stacking direction,
direction[:, 1] = ImageOrientationPatient[3:6] (down the rows), direction[:, 2] =
ImageOrientationPatient[0:3] (along a row), spacing = (slice step, PixelSpacing[0], PixelSpacing[1]).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

_LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])

#: Direction of a plain axial DICOM stack: slices go +S (feet to head), rows go +P, columns go +L.
AXIAL_DIRECTION: tuple[tuple[float, float, float], ...] = ((0.0, 0.0, 1.0), (0.0, 1.0, 0.0), (1.0, 0.0, 0.0))


@dataclass(frozen=True)
class Geometry:
    """Spacing, origin and direction of a volume in array axis order (see module docstring)."""

    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]
    direction: tuple[tuple[float, float, float], ...]  # 3x3, row-major; columns are axis vectors

    def __post_init__(self) -> None:
        if len(self.spacing) != 3 or any(not np.isfinite(s) or s <= 0 for s in self.spacing):
            raise ValueError(f"Geometry spacing must be 3 positive finite numbers, got {self.spacing!r}")
        if len(self.origin) != 3 or not np.all(np.isfinite(self.origin)):
            raise ValueError(f"Geometry origin must be 3 finite numbers, got {self.origin!r}")
        d = np.asarray(self.direction, dtype=float)
        if d.shape != (3, 3):
            raise ValueError(f"Geometry direction must be 3x3, got shape {d.shape}")
        if not np.allclose(np.linalg.norm(d, axis=0), 1.0, atol=1e-3):
            raise ValueError(f"Geometry direction columns must be unit vectors, got {d.tolist()}")

    @classmethod
    def create(
        cls,
        spacing: NDArray[np.floating] | tuple[float, ...] | list[float],
        origin: NDArray[np.floating] | tuple[float, ...] | list[float],
        direction: NDArray[np.floating] | list[list[float]] | None = None,
    ) -> Geometry:
        """Build a geometry from array-likes; ``direction`` defaults to :data:`AXIAL_DIRECTION`."""
        d = np.asarray(AXIAL_DIRECTION) if direction is None else np.asarray(direction, dtype=float).reshape(3, 3)
        return cls(
            spacing=tuple(float(s) for s in np.asarray(spacing, dtype=float).ravel()),  # type: ignore[arg-type]
            origin=tuple(float(o) for o in np.asarray(origin, dtype=float).ravel()),  # type: ignore[arg-type]
            direction=tuple(tuple(float(v) for v in row) for row in d),  # type: ignore[misc]
        )

    @property
    def direction_matrix(self) -> NDArray[np.float64]:
        return np.asarray(self.direction, dtype=np.float64)

    def affine_lps(self) -> NDArray[np.float64]:
        """4x4 matrix mapping homogeneous array index ``(k, j, i, 1)`` to LPS mm."""
        affine = np.eye(4)
        affine[:3, :3] = self.direction_matrix * np.asarray(self.spacing)[None, :]
        affine[:3, 3] = self.origin
        return affine

    def index_to_lps(self, index: NDArray[np.floating]) -> NDArray[np.float64]:
        """Map ``(..., 3)`` array indices to ``(..., 3)`` LPS coordinates in mm."""
        idx = np.asarray(index, dtype=np.float64)
        return idx @ (self.direction_matrix * np.asarray(self.spacing)[None, :]).T + np.asarray(self.origin)

    def lps_to_index(self, points: NDArray[np.floating]) -> NDArray[np.float64]:
        """Map ``(..., 3)`` LPS points (mm) to continuous array indices."""
        m = self.direction_matrix * np.asarray(self.spacing)[None, :]
        return (np.asarray(points, dtype=np.float64) - np.asarray(self.origin)) @ np.linalg.inv(m).T

    def nifti_affine(self) -> NDArray[np.float64]:
        """RAS affine for the array transposed to ``(x, y, z)`` = ``array.transpose(2, 1, 0)``.

        This is what NIfTI viewers expect: voxel ``(i, j, k)`` of the transposed array maps to RAS mm.
        """
        lps = self.affine_lps()
        reordered = np.eye(4)
        reordered[:3, :3] = lps[:3, [2, 1, 0]]
        reordered[:3, 3] = lps[:3, 3]
        return _LPS_TO_RAS @ reordered

    @classmethod
    def from_nifti_affine(cls, affine: NDArray[np.floating]) -> Geometry:
        """Inverse of :meth:`nifti_affine` (for an array already transposed back to ``(z, y, x)``)."""
        lps = _LPS_TO_RAS @ np.asarray(affine, dtype=float)
        m = lps[:3, [2, 1, 0]]
        spacing = np.linalg.norm(m, axis=0)
        return cls.create(spacing=spacing, origin=lps[:3, 3], direction=m / spacing[None, :])

    def with_spacing(self, spacing: tuple[float, float, float]) -> Geometry:
        """Same origin and direction, other spacing (used by resampling)."""
        return Geometry(spacing=tuple(float(s) for s in spacing), origin=self.origin, direction=self.direction)  # type: ignore[arg-type]

    def to_dict(self) -> dict[str, list[float] | list[list[float]]]:
        return {
            "spacing": list(self.spacing),
            "origin": list(self.origin),
            "direction": [list(r) for r in self.direction],
        }

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> Geometry:
        return cls.create(
            spacing=data["spacing"],  # type: ignore[arg-type]
            origin=data["origin"],  # type: ignore[arg-type]
            direction=data["direction"],  # type: ignore[arg-type]
        )


def index_transform(src: Geometry, dst: Geometry) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """``(matrix, offset)`` mapping an index of the ``dst`` grid to the index of the same LPS point on ``src``.

    ``src_index = matrix @ dst_index + offset`` (both ``(z, y, x)``), through physical space: both
    grids' spacing, origin and direction are used, never their array order alone.
    """
    m_src = src.direction_matrix * np.asarray(src.spacing)[None, :]
    m_dst = dst.direction_matrix * np.asarray(dst.spacing)[None, :]
    inv = np.linalg.inv(m_src)
    return inv @ m_dst, inv @ (np.asarray(dst.origin) - np.asarray(src.origin))


def resample_onto(
    volume: NDArray[np.generic], src: Geometry, dst: Geometry, dst_shape: tuple[int, int, int], order: int = 1
) -> NDArray[np.float32]:
    """Resample ``volume`` (on grid ``src``) onto the grid ``dst`` of shape ``dst_shape`` in physical space.

    Each output voxel takes the value of ``volume`` at the LPS position of its centre (linear
    interpolation for ``order=1``, nearest for ``order=0``); positions more than half a voxel outside
    ``volume`` are 0 (edge voxels extend by half a voxel, so a grid equal to ``src`` is an identity).

    Returns:
        float32 ``dst_shape``.
    """
    from scipy.ndimage import affine_transform

    if volume.ndim != 3:
        raise ValueError(f"volume must be 3D (z, y, x), got shape {volume.shape}")
    matrix, offset = index_transform(src, dst)
    out = affine_transform(
        np.asarray(volume, dtype=np.float32), matrix, offset, output_shape=tuple(dst_shape), order=order,
        mode="nearest",
    ).astype(np.float32, copy=False)
    limit = np.asarray(volume.shape, dtype=np.float64) - 0.5
    jj, ii = np.meshgrid(np.arange(dst_shape[1]), np.arange(dst_shape[2]), indexing="ij")
    plane = np.stack([np.zeros_like(jj), jj, ii], axis=-1).astype(np.float64) @ matrix.T + offset
    for k in range(dst_shape[0]):  # one plane of source coordinates at a time
        coords = plane + k * matrix[:, 0]
        out[k][~np.all((coords >= -0.5) & (coords <= limit), axis=-1)] = 0.0
    return out
