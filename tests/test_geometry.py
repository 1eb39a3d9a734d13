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


def _linear_field(g: Geometry, shape: tuple[int, int, int]) -> np.ndarray:
    """Values ``f(p) = 3 p_L - 2 p_P + 0.5 p_S + 7`` at the LPS centre of every voxel of grid ``g``."""
    idx = np.stack(np.meshgrid(*(np.arange(n) for n in shape), indexing="ij"), axis=-1)
    p = g.index_to_lps(idx.reshape(-1, 3).astype(float))
    return (p @ np.array([3.0, -2.0, 0.5]) + 7.0).reshape(shape)


def test_resample_onto_uses_physical_positions_not_indices() -> None:
    from medseg.geometry import resample_onto

    ref = Geometry.create([2.0, 1.0, 1.0], [0.0, 0.0, 0.0])  # reference (first channel) grid
    ref_shape = (6, 10, 12)
    # other channel: coarser, shifted by a non-integer number of voxels, and oblique
    other = _oblique()
    other = Geometry.create([3.0, 1.5, 2.0], [-3.3, -4.1, -5.2], other.direction_matrix)
    other_shape = (12, 20, 20)
    src = _linear_field(other, other_shape).astype(np.float32)
    out = resample_onto(src, other, ref, ref_shape, order=1)
    assert out.shape == ref_shape and out.dtype == np.float32
    expected = _linear_field(ref, ref_shape)
    idx = np.stack(np.meshgrid(*(np.arange(n) for n in ref_shape), indexing="ij"), -1).reshape(-1, 3)
    src_idx = other.lps_to_index(ref.index_to_lps(idx.astype(float)))  # where each reference voxel lies
    inside = np.all((src_idx >= 0) & (src_idx <= np.asarray(other_shape) - 1), axis=1).reshape(ref_shape)
    assert inside.mean() > 0.5
    np.testing.assert_allclose(out[inside], expected[inside], rtol=1e-4, atol=1e-3)
    # one known point: voxel (2, 3, 4) of the reference grid is at LPS (4, 3, 2) mm (axial, origin 0)
    np.testing.assert_allclose(ref.index_to_lps(np.array([2, 3, 4])), [4.0, 3.0, 4.0])
    np.testing.assert_allclose(out[2, 3, 4], 3 * 4.0 - 2 * 3.0 + 0.5 * 4.0 + 7.0, rtol=1e-4)
    # an index-based copy (ignoring geometry) would give src[2, 3, 4], a different value
    assert abs(float(src[2, 3, 4]) - float(out[2, 3, 4])) > 1.0


def test_resample_onto_same_grid_is_identity_and_outside_is_zero() -> None:
    from medseg.geometry import resample_onto

    g = _oblique()
    vol = np.random.default_rng(0).normal(size=(5, 6, 7)).astype(np.float32)
    np.testing.assert_allclose(resample_onto(vol, g, g, (5, 6, 7)), vol, atol=1e-5)
    far = Geometry.create(g.spacing, np.asarray(g.origin) + 1000.0, g.direction_matrix)
    assert not resample_onto(vol, g, far, (5, 6, 7)).any()
