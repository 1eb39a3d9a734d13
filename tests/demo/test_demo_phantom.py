"""Tests for medseg.demo.phantom."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from medseg.demo.phantom import LABEL_NAMES, make_phantom


def _phantom(seed: int, shape=(36, 112, 112), spacing=(3.0, 1.4, 1.4)):
    return make_phantom(shape, spacing, np.random.default_rng(seed))


def test_dtypes_shapes_and_labels() -> None:
    hu, label = _phantom(0)
    assert hu.shape == label.shape == (36, 112, 112)
    assert hu.dtype == np.int16 and label.dtype == np.uint8
    assert set(np.unique(label).tolist()) == {0, 1, 2}
    assert LABEL_NAMES == {1: "organ", 2: "lesion"}
    assert hu.min() >= -1024 and hu.max() <= 3071


def test_intensities_are_ct_like_and_classes_separable() -> None:
    hu, label = _phantom(1)
    assert np.median(hu[:, 0, 0]) < -900  # air in the corner
    organ, lesion = hu[label == 1].astype(float), hu[label == 2].astype(float)
    assert 100 < organ.mean() < 140
    assert 185 < lesion.mean() < 235
    assert lesion.mean() - organ.mean() > 60  # clearly visible for a small network
    tissue_like = (hu > 0) & (hu < 80)
    assert not np.any(tissue_like[label == 2] & (hu[label == 2] < 120))  # no lesion voxel looks like tissue
    assert 8 < organ.std() < 25  # noise ~ 15 HU, not a constant
    tissue = hu[(label == 0) & (hu > 0) & (hu < 80)]
    assert tissue.size > 1000 and abs(tissue.mean() - 40) < 15


@pytest.mark.parametrize("seed", range(8))
def test_lesions_lie_inside_the_organ(seed: int) -> None:
    _, label = _phantom(seed, shape=(30, 100, 100), spacing=(4.0, 1.6, 1.6))
    lesion = label == 2
    n_lesions = ndimage.label(lesion)[1]
    assert 1 <= n_lesions <= 3
    # Grow the lesions by one pixel in-plane: everything they touch is still organ or lesion.
    grown = ndimage.binary_dilation(lesion, structure=np.ones((1, 3, 3), bool))
    assert np.all(label[grown] >= 1)
    # ... and each lesion is 8-16 mm "radius": equivalent-sphere radius within [6, 18] mm.
    voxel = 4.0 * 1.6 * 1.6
    sizes = ndimage.sum(lesion, ndimage.label(lesion)[0], range(1, n_lesions + 1))
    radii = (np.asarray(sizes) * voxel * 3 / (4 * np.pi)) ** (1 / 3)
    assert np.all((radii > 5.0) & (radii < 18.0)), radii


def test_same_rng_same_phantom_different_rng_different() -> None:
    a = _phantom(7)
    b = _phantom(7)
    c = _phantom(8)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[1], c[1])


def test_anatomy_is_defined_in_mm_not_voxels() -> None:
    """Same random draw at two spacings: the organ has about the same physical volume."""
    fine_spacing, coarse_spacing = (2.5, 1.2, 1.2), (5.0, 1.6, 1.6)
    _, fine = make_phantom((48, 140, 140), fine_spacing, np.random.default_rng(3))
    _, coarse = make_phantom((24, 105, 105), coarse_spacing, np.random.default_rng(3))
    vol_fine = (fine >= 1).sum() * np.prod(fine_spacing)
    vol_coarse = (coarse >= 1).sum() * np.prod(coarse_spacing)
    assert abs(vol_fine - vol_coarse) / vol_fine < 0.1
    assert vol_fine > 150_000  # mm^3: a large, easy target


def test_too_small_field_of_view_is_refused() -> None:
    with pytest.raises(ValueError, match="too small"):
        make_phantom((10, 40, 40), (1.0, 1.0, 1.0), np.random.default_rng(0))
    with pytest.raises(ValueError, match="spacing"):
        make_phantom((10, 40, 40), (0.0, 1.0, 1.0), np.random.default_rng(0))
