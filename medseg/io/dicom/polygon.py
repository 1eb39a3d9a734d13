"""Scanline polygon fill on a pixel grid (no scikit-image / OpenCV dependency).

A pixel ``[j, i]`` is filled when its *centre* ``(j, i)`` lies inside the polygon or exactly on its
boundary (within ``tol`` pixels). So a square whose corners sit on pixel centres ``(2, 3)`` and
``(6, 7)`` fills rows 2..6 and columns 3..7 inclusive, which is how contours traced through
boundary pixel centres (rt-utils, OpenCV ``findContours``) round-trip exactly. With
``boundary=False`` only centres strictly inside are filled (used for holes, whose traced contour
runs through pixels of the surrounding region). Self-intersecting polygons use the even-odd rule.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray

BOUNDARY_TOL = 1e-3  # pixels


def fill_polygon(
    points: NDArray[np.floating], shape: tuple[int, int], tol: float = BOUNDARY_TOL, boundary: bool = True
) -> NDArray[np.bool_]:
    """Rasterise one closed polygon.

    Args:
        points: ``(n, 2)`` vertices in continuous pixel index coordinates ``(row j, column i)``;
            the polygon is closed implicitly (a repeated first vertex at the end is allowed).
        shape: ``(rows, columns)`` of the output mask.
        tol: Distance (pixels) within which a pixel centre counts as on the boundary.
        boundary: Fill pixel centres on the boundary too (else only strictly inside ones).

    Returns:
        ``(rows, columns)`` bool mask; vertices outside the grid are clipped.
    """
    out = np.zeros(shape, dtype=bool)
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    if len(pts) > 1 and np.allclose(pts[0], pts[-1]):
        pts = pts[:-1]
    if len(pts) == 0 or not np.all(np.isfinite(pts)):
        return out
    rows, cols = shape
    j_lo = max(math.ceil(float(pts[:, 0].min()) - tol), 0)
    j_hi = min(math.floor(float(pts[:, 0].max()) + tol), rows - 1)
    if j_hi < j_lo:
        return out
    y = np.arange(j_lo, j_hi + 1, dtype=np.float64)[:, None]  # (R, 1) row centres
    nxt = np.roll(pts, -1, axis=0)
    ya, xa, yb, xb = pts[:, 0], pts[:, 1], nxt[:, 0], nxt[:, 1]  # (E,)
    dy = yb - ya
    horizontal = np.abs(dy) <= tol
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (y - ya) / np.where(horizontal, 1.0, dy)
    x = xa + t * (xb - xa)  # (R, E) x where each edge meets each row
    # interior: even-odd spans between crossings (half-open rule so shared vertices count once)
    cross = ((ya <= y) & (yb > y)) | ((yb <= y) & (ya > y))
    xs = np.sort(np.where(cross, x, np.inf), axis=1)
    n_cross = cross.sum(axis=1)
    for r in np.nonzero(n_cross)[0]:
        row_x = xs[r, : n_cross[r]]
        for a, b in zip(row_x[0::2], row_x[1::2], strict=False):
            lo, hi = max(math.ceil(a - tol), 0), min(math.floor(b + tol), cols - 1)
            if hi >= lo:
                out[j_lo + r, lo : hi + 1] = True
    # boundary: pixel centres lying on a (non-horizontal) edge ...
    edge = np.zeros(shape, dtype=bool)
    y_min, y_max = np.minimum(ya, yb), np.maximum(ya, yb)
    near = (~horizontal) & (y >= y_min - tol) & (y <= y_max + tol)
    xr = np.rint(x)
    on_edge = near & (np.abs(x - xr) <= tol) & (xr >= 0) & (xr < cols)
    rr, ee = np.nonzero(on_edge)
    edge[j_lo + rr, xr[rr, ee].astype(np.intp)] = True
    # ... and on horizontal edges that run along a row of centres
    for e in np.nonzero(horizontal)[0]:
        row = ya[e]
        jr = round(float(row))
        if abs(row - jr) > tol or not 0 <= jr < rows:
            continue
        lo = max(math.ceil(min(xa[e], xb[e]) - tol), 0)
        hi = min(math.floor(max(xa[e], xb[e]) + tol), cols - 1)
        if hi >= lo:
            edge[jr, lo : hi + 1] = True
    return out | edge if boundary else out & ~edge


def polygon_area(points: NDArray[np.floating]) -> float:
    """Area of a simple polygon given as ``(n, 2)`` vertices (shoelace formula, same units squared)."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    x, y = pts[:, 0], pts[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def point_in_polygon(point: NDArray[np.floating] | tuple[float, float], points: NDArray[np.floating]) -> bool:
    """Even-odd ray test: is ``point`` ``(j, i)`` strictly inside the polygon ``(n, 2)``? (boundary: either)."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    y, x = float(point[0]), float(point[1])
    nxt = np.roll(pts, -1, axis=0)
    ya, xa, yb, xb = pts[:, 0], pts[:, 1], nxt[:, 0], nxt[:, 1]
    cross = (ya <= y) != (yb <= y)
    with np.errstate(divide="ignore", invalid="ignore"):
        xc = xa + (y - ya) / np.where(cross, yb - ya, 1.0) * (xb - xa)
    return bool(np.count_nonzero(cross & (xc > x)) % 2)
