import numpy as np
import pytest

from medseg.geometry import AXIAL_DIRECTION, Geometry


def _oblique() -> Geometry:
    angle = np.deg2rad(20)
    rot = np.array([[1, 0, 0], [0, np.cos(angle), -np.sin(angle)], [0, np.sin(angle), np.cos(angle)]])
    return Geometry.create([4.0, 0.8, 1.2], [-10.0, 20.0, 35.5], rot @ np.asarray(AXIAL_DIRECTION))


def test_index_to_lps_matches_affine_and_inverts() -> None:
    g = _oblique()
    idx = np.array([[0, 0, 0], [3, 5, 7], [10.5, 2.0, 1.25]])
    pts = g.index_to_lps(idx)
    homog = np.c_[idx, np.ones(len(idx))] @ g.affine_lps().T
    np.testing.assert_allclose(pts, homog[:, :3])
    np.testing.assert_allclose(g.lps_to_index(pts), idx, atol=1e-9)
    np.testing.assert_allclose(pts[0], g.origin)


def test_nifti_affine_maps_transposed_index_to_ras() -> None:
    g = _oblique()
    k, j, i = 3, 5, 7
    lps = g.index_to_lps(np.array([k, j, i]))
    ras = g.nifti_affine() @ np.array([i, j, k, 1.0])
    np.testing.assert_allclose(ras[:3], lps * np.array([-1, -1, 1]))
    back = Geometry.from_nifti_affine(g.nifti_affine())
    np.testing.assert_allclose(back.affine_lps(), g.affine_lps(), atol=1e-9)


def test_axial_default_gives_conventional_nifti_orientation() -> None:
    g = Geometry.create([5.0, 0.7, 0.7], [0, 0, 0])
    diag = np.diag(g.nifti_affine())[:3]
    np.testing.assert_allclose(diag, [-0.7, -0.7, 5.0])


@pytest.mark.parametrize(
    ("spacing", "direction", "match"),
    [([0, 1, 1], None, "spacing"), ([1, 1, 1], np.ones((3, 3)), "unit vectors"), ([1, 1], None, "spacing")],
)
def test_invalid_geometry_is_rejected_with_the_value(spacing, direction, match) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match=match):
        Geometry.create(spacing, [0, 0, 0], direction)


def test_dict_round_trip() -> None:
    g = _oblique()
    assert Geometry.from_dict(g.to_dict()) == g
