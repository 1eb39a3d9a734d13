"""Scanline polygon fill on a pixel grid (medseg.io.dicom.polygon): boundary rule, agreement with a
reference point-in-polygon test, clipping; the shoelace area and the even-odd point test."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.path import Path as MplPath

from medseg.io.dicom.polygon import fill_polygon, point_in_polygon, polygon_area


def test_square_with_corners_on_pixel_centres_fills_inclusively() -> None:
    mask = fill_polygon(np.array([[2, 3], [2, 7], [6, 7], [6, 3]], float), (10, 12))
    expected = np.zeros((10, 12), bool)
    expected[2:7, 3:8] = True
    np.testing.assert_array_equal(mask, expected)
    # corners on pixel edges: only the centres strictly inside
    half = fill_polygon(np.array([[1.5, 2.5], [1.5, 6.5], [5.5, 6.5], [5.5, 2.5]], float), (10, 12))
    expected = np.zeros((10, 12), bool)
    expected[2:6, 3:7] = True
    np.testing.assert_array_equal(half, expected)


def test_fill_matches_point_in_polygon_away_from_the_boundary() -> None:
    rng = np.random.default_rng(3)
    jj, ii = np.mgrid[0:40, 0:50]
    centres = np.stack([jj.ravel(), ii.ravel()], 1).astype(float)
    for _ in range(20):
        n = int(rng.integers(3, 25))
        ang = np.sort(rng.uniform(0, 2 * np.pi, n))
        rad = rng.uniform(4, 18, n)
        pts = np.stack([20 + rad * np.sin(ang), 25 + rad * np.cos(ang)], 1) + rng.uniform(-0.3, 0.3, (n, 2))
        ours = fill_polygon(pts, (40, 50)).ravel()
        ref = MplPath(pts).contains_points(centres)
        far = MplPath(pts).contains_points(centres, radius=0.01) == MplPath(pts).contains_points(centres, radius=-0.01)
        np.testing.assert_array_equal(ours[far], ref[far])
    # clipping: a polygon larger than the grid fills it all
    assert fill_polygon(np.array([[-5, -5], [-5, 60], [50, 60], [50, -5]], float), (40, 50)).all()


def test_area_and_point_test_of_a_concave_polygon() -> None:
    """An L-shape (a 4x4 square minus its 2x2 top-right quarter): area 12, the notch is outside."""
    ell = np.array([[0, 0], [0, 4], [2, 4], [2, 2], [4, 2], [4, 0]], float)
    assert polygon_area(ell) == pytest.approx(12.0)
    assert polygon_area(ell[::-1]) == pytest.approx(12.0)  # orientation does not matter
    assert point_in_polygon((1.0, 1.0), ell) and point_in_polygon((1.0, 3.0), ell) and point_in_polygon((3.0, 1.0), ell)
    assert not point_in_polygon((3.0, 3.0), ell)  # inside the bounding box, in the notch
    assert not point_in_polygon((5.0, 1.0), ell) and not point_in_polygon((-1.0, 1.0), ell)
    strictly_inside = [(1, 1), (1, 2), (1, 3), (2, 1), (3, 1)]  # pixel centres off every edge
    assert [(int(j), int(i)) for j, i in np.argwhere(fill_polygon(ell, (6, 6), boundary=False))] == strictly_inside
    assert all(point_in_polygon(p, ell) for p in strictly_inside)
