"""Synthetic CT-like abdominal phantom (pure numpy).

The phantom is defined in millimetres in the *array frame* (voxel index times spacing, centred on
the volume centre), so two volumes with different spacings show the same anatomy at the same
physical size. Contents, from outside in:

* air (-1000 HU) outside an elliptic-cylinder body running through all slices;
* a subcutaneous fat rim (about -100 HU) inside the body outline;
* soft tissue (about 40 HU) and a posterior "spine" cylinder (about 600 HU, label 0);
* an "organ" ellipsoid (label 1, about 120 HU) with a smooth random bump on its surface;
* 1-3 hyperdense "lesions" (label 2, about 190-230 HU, like arterial-phase enhancing lesions),
  ellipsoids of 8-16 mm radius lying fully inside the organ; the lesion label overrides the organ label;
* Gaussian noise (std about 15 HU).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

#: Label values of the phantom ground truth.
LABEL_NAMES: dict[int, str] = {1: "organ", 2: "lesion"}

HU_MIN = -1024
HU_MAX = 3071


@dataclass(frozen=True)
class PhantomSpec:
    """Nominal intensities (HU) and sizes (mm) of the phantom; all defaults are CT-plausible."""

    air_hu: float = -1000.0
    fat_hu: float = -100.0
    tissue_hu: float = 40.0
    bone_hu: float = 600.0
    organ_hu: float = 120.0
    lesion_hu_range: tuple[float, float] = (190.0, 230.0)
    noise_std: float = 15.0
    body_semi_axes_mm: tuple[float, float] = (62.0, 80.0)  # (y = anterior-posterior, x = left-right)
    fat_rim_mm: float = 9.0
    organ_semi_axes_mm: tuple[float, float, float] = (40.0, 38.0, 50.0)  # (z, y, x)
    lesion_radius_mm: tuple[float, float] = (8.0, 16.0)
    lesion_count: tuple[int, int] = (1, 3)


def _grid_mm(
    shape_zyx: tuple[int, int, int], spacing_zyx: tuple[float, float, float]
) -> tuple[NDArray[np.float32], NDArray[np.float32], NDArray[np.float32]]:
    """Broadcastable mm coordinates of voxel centres, relative to the volume centre.

    Returns:
        ``(z, y, x)`` arrays of shapes ``(Z,1,1)``, ``(1,Y,1)``, ``(1,1,X)`` in mm.
    """
    axes = [
        ((np.arange(n, dtype=np.float32) - (n - 1) / 2.0) * np.float32(s))
        for n, s in zip(shape_zyx, spacing_zyx, strict=True)
    ]
    return axes[0][:, None, None], axes[1][None, :, None], axes[2][None, None, :]


def _ellipsoid_radius(
    dz: NDArray[np.float32],
    dy: NDArray[np.float32],
    dx: NDArray[np.float32],
    semi_axes: tuple[float, float, float],
    angle: float,
) -> NDArray[np.float32]:
    """Normalised ellipsoid radius (``<= 1`` inside) of offsets rotated by ``angle`` in the y-x plane."""
    c, s = np.float32(np.cos(angle)), np.float32(np.sin(angle))
    ry = c * dy + s * dx
    rx = -s * dy + c * dx
    a, b, d = (np.float32(v) for v in semi_axes)
    return np.sqrt((dz / a) ** 2 + (ry / b) ** 2 + (rx / d) ** 2)


def make_phantom(
    shape_zyx: tuple[int, int, int],
    spacing_zyx: tuple[float, float, float],
    rng: np.random.Generator,
    spec: PhantomSpec | None = None,
) -> tuple[NDArray[np.int16], NDArray[np.uint8]]:
    """Draw one random CT-like phantom.

    Args:
        shape_zyx: Array shape ``(slices, rows, columns)``.
        spacing_zyx: Voxel spacing in mm in array-axis order ``(slice step, row, column)``.
        rng: Source of all randomness (shape jitter, lesion placement, noise); same state, same output.
        spec: Nominal intensities and sizes; defaults to :class:`PhantomSpec()`.

    Returns:
        ``(hu, label)``: ``hu`` int16 ``(Z, Y, X)`` Hounsfield units clipped to [-1024, 3071];
        ``label`` uint8 ``(Z, Y, X)`` with 0 background, 1 organ, 2 lesion (see :data:`LABEL_NAMES`).

    Raises:
        ValueError: if the shape or spacing is not 3 positive values, or the field of view is too
            small to hold the organ.
    """
    spec = spec or PhantomSpec()
    if len(shape_zyx) != 3 or any(int(n) < 1 for n in shape_zyx):
        raise ValueError(f"make_phantom: shape_zyx must be 3 positive ints, got {shape_zyx!r}")
    if len(spacing_zyx) != 3 or any(not np.isfinite(s) or s <= 0 for s in spacing_zyx):
        raise ValueError(f"make_phantom: spacing_zyx must be 3 positive mm values, got {spacing_zyx!r}")
    shape = (int(shape_zyx[0]), int(shape_zyx[1]), int(shape_zyx[2]))
    spacing = (float(spacing_zyx[0]), float(spacing_zyx[1]), float(spacing_zyx[2]))
    extent = [n * s for n, s in zip(shape, spacing, strict=True)]
    organ_axes = np.asarray(spec.organ_semi_axes_mm) * rng.uniform(0.9, 1.1, size=3)
    if any(2 * a + 10.0 > e for a, e in zip(organ_axes, extent, strict=True)):
        raise ValueError(
            f"make_phantom: field of view {[round(e, 1) for e in extent]} mm (z, y, x) is too small for an "
            f"organ of semi-axes {organ_axes.round(1).tolist()} mm; use more slices/rows/columns "
            "or a larger spacing"
        )
    z, y, x = _grid_mm(shape, spacing)

    # Body: elliptic cylinder, no larger than 47% of the in-plane field of view.
    body_b = min(spec.body_semi_axes_mm[0] * rng.uniform(0.95, 1.05), 0.47 * extent[1])
    body_c = min(spec.body_semi_axes_mm[1] * rng.uniform(0.95, 1.05), 0.47 * extent[2])
    body_r = np.sqrt((y / np.float32(body_b)) ** 2 + (x / np.float32(body_c)) ** 2)
    rim = spec.fat_rim_mm / min(body_b, body_c)
    body = np.broadcast_to(body_r <= 1.0, shape)
    inner = np.broadcast_to(body_r <= 1.0 - rim, shape)

    hu = np.full(shape, spec.air_hu, dtype=np.float32)
    hu[body] = spec.fat_hu
    hu[inner] = spec.tissue_hu
    spine_r = np.float32(min(12.0, 0.15 * body_b))
    spine_y = np.float32(body_b * (1.0 - rim) - spine_r - 3.0)
    spine = np.broadcast_to((y - spine_y) ** 2 + x**2 <= spine_r**2, shape) & inner
    hu[spine] = spec.bone_hu

    # Organ: ellipsoid offset anteriorly/laterally, rotated in-plane, with a smooth surface bump.
    margin_y = max(0.0, body_b * (1.0 - rim) - organ_axes[1] - 4.0)
    margin_x = max(0.0, body_c * (1.0 - rim) - organ_axes[2] - 4.0)
    zmax = max(0.0, extent[0] / 2 - organ_axes[0] - 5.0)
    center = np.array(
        [
            rng.uniform(-min(8.0, zmax), min(8.0, zmax)),
            rng.uniform(-min(12.0, margin_y), min(4.0, margin_y)),
            rng.uniform(-min(15.0, margin_x), min(15.0, margin_x)),
        ]
    )
    angle = float(rng.uniform(-0.5, 0.5))
    dz, dy, dx = z - np.float32(center[0]), y - np.float32(center[1]), x - np.float32(center[2])
    organ_r = _ellipsoid_radius(dz, dy, dx, (organ_axes[0], organ_axes[1], organ_axes[2]), angle)
    theta = np.arctan2(dy, dx)
    bump = 1.0 + np.float32(0.08) * np.sin(2.0 * theta + np.float32(rng.uniform(0, 2 * np.pi))) * np.cos(
        dz / np.float32(organ_axes[0]) * np.float32(np.pi / 2)
    )
    organ = (organ_r <= bump) & inner & ~spine

    label = np.zeros(shape, dtype=np.uint8)
    label[organ] = 1
    hu[organ] = spec.organ_hu + rng.uniform(-10.0, 10.0)

    # Lesions: ellipsoids placed by rejection sampling fully inside the (unbumped, 0.92-shrunk) organ.
    n_lesions = int(rng.integers(spec.lesion_count[0], spec.lesion_count[1] + 1))
    placed: list[tuple[NDArray[np.float64], float]] = []
    for _ in range(200):
        if len(placed) == n_lesions:
            break
        radius = float(rng.uniform(*spec.lesion_radius_mm))
        semi = radius * rng.uniform(0.85, 1.15, size=3)
        room = 0.92 - (semi.max() + 3.0) / organ_axes.min()
        if room <= 0.05:
            continue
        direction = rng.normal(size=3)
        direction /= np.linalg.norm(direction)
        offset = direction * rng.uniform(0.0, room) * organ_axes  # stays inside the unrotated ellipsoid
        c, s = np.cos(angle), np.sin(angle)
        lesion_center = center + np.array(
            [offset[0], c * offset[1] - s * offset[2], s * offset[1] + c * offset[2]]
        )
        if any(np.linalg.norm(lesion_center - pc) < semi.max() + pr + 4.0 for pc, pr in placed):
            continue
        lz, ly, lx = (
            z - np.float32(lesion_center[0]),
            y - np.float32(lesion_center[1]),
            x - np.float32(lesion_center[2]),
        )
        lesion_r = _ellipsoid_radius(lz, ly, lx, (semi[0], semi[1], semi[2]), float(rng.uniform(0, np.pi)))
        lesion = (lesion_r <= 1.0) & organ
        if not lesion.any():
            continue
        label[lesion] = 2
        hu[lesion] = rng.uniform(*spec.lesion_hu_range)
        placed.append((lesion_center, float(semi.max())))

    hu += rng.normal(0.0, spec.noise_std, size=shape).astype(np.float32)
    hu_int = np.clip(np.rint(hu), HU_MIN, HU_MAX).astype(np.int16)
    return hu_int, label
