"""Metric definitions on hand-computable masks, empty-mask rules, implementation invariants."""

from __future__ import annotations

import math

import numpy as np
import pytest

from medseg.evaluation import metrics as m


def _box(shape: tuple[int, int, int], lo: tuple[int, int, int], hi: tuple[int, int, int]) -> np.ndarray:
    a = np.zeros(shape, dtype=bool)
    a[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]] = True
    return a


def test_dice_iou_from_counts() -> None:
    gt = _box((4, 10, 10), (0, 0, 0), (1, 10, 10))  # 100 voxels
    pred = _box((4, 10, 10), (0, 0, 0), (1, 10, 5))  # 50 voxels, all inside gt
    assert m.confusion(pred, gt) == (50, 0, 50, 400 - 100)
    assert m.dice(pred, gt) == pytest.approx(2 * 50 / (100 + 50))
    assert m.iou(pred, gt) == pytest.approx(50 / 100)
    assert m.dice(gt, gt) == 1.0
    assert m.dice(pred, ~pred & gt) == 0.0


def test_single_voxels_anisotropic_distances() -> None:
    shape, spacing = (5, 5, 5), (3.0, 0.5, 0.7)
    a = np.zeros(shape, dtype=bool)
    b = np.zeros(shape, dtype=bool)
    a[1, 2, 2] = True
    b[2, 2, 2] = True  # one slice apart: 3 mm
    assert m.hd95(a, b, spacing) == pytest.approx(3.0)
    assert m.assd(a, b, spacing) == pytest.approx(3.0)
    assert m.surface_dice(a, b, spacing, tolerance_mm=2.9) == 0.0
    assert m.surface_dice(a, b, spacing, tolerance_mm=3.0) == 1.0
    c = np.zeros(shape, dtype=bool)
    c[1, 4, 0] = True  # in-plane offset (2 rows, 2 columns) from a
    assert m.hd95(a, c, spacing) == pytest.approx(math.hypot(2 * 0.5, 2 * 0.7))


def test_hd95_uses_directed_percentiles() -> None:
    # gt: a slab; pred: the same slab plus one far voxel -> the outlier is <5% of pred's surface,
    # so HD95 stays 0
    spacing = (1.0, 1.0, 1.0)
    gt = _box((30, 30, 30), (5, 5, 5), (15, 25, 25))
    pred = gt.copy()
    pred[28, 28, 28] = True
    assert m.hd95(pred, gt, spacing) == pytest.approx(0.0)
    d_pg, d_gp = m.surface_distances(pred, gt, spacing)
    assert d_pg.max() == pytest.approx(math.sqrt(14**2 + 4**2 + 4**2))  # plain Hausdorff sees it
    assert np.all(d_gp == 0)


def test_empty_mask_rules() -> None:
    shape, spacing = (4, 6, 8), (2.0, 1.0, 0.5)
    empty = np.zeros(shape, dtype=bool)
    one = _box(shape, (1, 1, 1), (3, 4, 5))
    both = m.binary_metrics(empty, empty, spacing)
    for key in ("Dice", "IoU", "HD95", "ASSD", "NSD"):
        assert math.isnan(both[key]), key
    assert both["VolumeDiff_ml"] == 0.0 and both["n_ref"] == 0 and both["n_pred"] == 0
    diagonal = math.sqrt((3 * 2.0) ** 2 + (5 * 1.0) ** 2 + (7 * 0.5) ** 2)
    assert m.image_diagonal_mm(shape, spacing) == pytest.approx(diagonal)
    for pred, gt in ((empty, one), (one, empty)):
        r = m.binary_metrics(pred, gt, spacing)
        assert r["Dice"] == 0.0 and r["IoU"] == 0.0 and r["NSD"] == 0.0
        assert r["HD95"] == pytest.approx(diagonal) and r["ASSD"] == pytest.approx(diagonal)
    with pytest.raises(ValueError, match="non-empty"):
        m.surface_distances(empty, one, spacing)


def test_volume_difference_signed_ml() -> None:
    spacing = (2.0, 1.0, 0.5)  # 1 mm^3 voxels
    gt = _box((10, 10, 10), (0, 0, 0), (10, 10, 10))  # 1000 voxels = 1 ml
    pred = _box((10, 10, 10), (0, 0, 0), (5, 10, 10))
    assert m.volume_difference_ml(pred, gt, spacing) == pytest.approx(-0.5)
    assert m.volume_difference_ml(gt, pred, spacing) == pytest.approx(0.5)
    assert m.binary_metrics(pred, gt, spacing)["VolumeDiff_ml"] == pytest.approx(-0.5)


def test_surface_is_xor_erosion_and_border_counts() -> None:
    cube = _box((5, 5, 5), (0, 0, 0), (5, 5, 5))  # fills the array: every border voxel is surface
    s = m.surface(cube)
    assert s.sum() == 125 - 27
    assert not s[1:4, 1:4, 1:4].any()


def test_kdtree_and_edt_agree_and_crop_is_exact() -> None:
    rng = np.random.default_rng(3)
    spacing = (2.5, 0.8, 0.6)
    gt = _box((16, 24, 20), (0, 3, 2), (9, 20, 20))  # touches two array borders
    pred = gt ^ (rng.random(gt.shape) < 0.05)
    a = m.surface_distances(pred, gt, spacing, method="kdtree")
    b = m.surface_distances(pred, gt, spacing, method="edt")
    np.testing.assert_allclose(a[0], b[0], atol=1e-9)
    np.testing.assert_allclose(a[1], b[1], atol=1e-9)
    # Embedding in a larger zero volume (away from the border) changes the surface only where the
    # mask touched the border, so compare with a mask that does not touch it.
    inner_gt, inner_pred = gt[1:, 1:-1, 1:-1], pred[1:, 1:-1, 1:-1]
    inner_gt[0], inner_pred[0] = False, False
    big_gt = np.pad(inner_gt, 7)
    big_pred = np.pad(inner_pred, 7)
    r_small = m.binary_metrics(inner_pred, inner_gt, spacing)
    r_big = m.binary_metrics(big_pred, big_gt, spacing)
    for key in ("Dice", "HD95", "ASSD", "NSD"):
        assert r_small[key] == pytest.approx(r_big[key]), key
    with pytest.raises(ValueError, match="kdtree"):
        m.surface_distances(pred, gt, spacing, method="fast")


def test_case_metrics_multilabel_keys_and_counts() -> None:
    gt = np.zeros((6, 8, 8), dtype=np.uint8)
    gt[1:3, 1:4, 1:4] = 1
    gt[3:5, 4:7, 4:7] = 2
    pred = gt.copy()
    pred[pred == 2] = 0
    out = m.case_metrics(pred, gt, (1.0, 1.0, 1.0), [1, 2, 3])
    assert set(out) == {1, 2, 3}
    for metrics in out.values():
        assert tuple(metrics) == m.METRIC_KEYS
    assert out[1]["Dice"] == 1.0 and out[1]["HD95"] == 0.0 and out[1]["NSD"] == 1.0
    assert out[2]["Dice"] == 0.0 and out[2]["FN"] == 18 and out[2]["n_pred"] == 0
    assert math.isnan(out[3]["Dice"])
    assert out[1]["TP"] + out[1]["FP"] + out[1]["FN"] + out[1]["TN"] == gt.size


def test_input_validation_messages() -> None:
    a = np.zeros((2, 3, 4), dtype=bool)
    with pytest.raises(ValueError, match="shape"):
        m.dice(a, np.zeros((2, 3, 5), dtype=bool))
    with pytest.raises(ValueError, match="3D"):
        m.dice(a[0], a[0])
    with pytest.raises(ValueError, match="spacing"):
        m.hd95(a, a, (1.0, 0.0, 1.0))
    with pytest.raises(ValueError, match="tolerance"):
        m.surface_dice(a, a, (1.0, 1.0, 1.0), -1.0)
    with pytest.raises(ValueError, match="label"):
        m.case_metrics(a.astype(np.uint8), a.astype(np.uint8), (1.0, 1.0, 1.0), [])


@pytest.mark.slow
def test_full_ct_size_evaluates() -> None:
    """A 512x512x300 label map with a large organ (the time it takes is a benchmark's business, not a test's)."""
    shape = (300, 512, 512)
    z, y, x = (np.arange(n, dtype=np.float32) for n in shape)  # float32 keeps the peak memory ~300 MB
    z, y, x = z[:, None, None], y[None, :, None], x[None, None, :]
    gt = (((z - 150) / 80) ** 2 + ((y - 256) / 150) ** 2 + ((x - 256) / 150) ** 2 <= 1).astype(np.uint8)
    pred = (((z - 152) / 78) ** 2 + ((y - 250) / 150) ** 2 + ((x - 260) / 152) ** 2 <= 1).astype(np.uint8)
    del z, y, x
    out = m.case_metrics(pred, gt, (1.0, 0.8, 0.8), [1])[1]
    assert 0.9 < out["Dice"] < 1.0
    assert 0 < out["HD95"] < 10
    assert (out["Lesion_TP"], out["Lesion_FP"], out["Lesion_FN"]) == (1, 0, 0)
