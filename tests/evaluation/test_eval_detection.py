"""Precision / recall / specificity and lesion-wise (connected-component) detection on hand-checked masks."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from medseg.evaluation import metrics as m
from medseg.evaluation.detection import components, lesion_metrics


def _mask(shape: tuple[int, int, int], *boxes: tuple[int, int, int, int]) -> np.ndarray:
    """``(z=0) rows r0:r1, cols c0:c1`` boxes in one plane of a ``shape`` volume."""
    a = np.zeros(shape, dtype=bool)
    for r0, r1, c0, c1 in boxes:
        a[0, r0:r1, c0:c1] = True
    return a


def test_voxel_precision_recall_specificity_f1() -> None:
    gt = _mask((2, 10, 10), (0, 10, 0, 10))  # plane 0: 100 voxels of 200
    pred = _mask((2, 10, 10), (0, 10, 0, 5))  # 50 voxels in gt ...
    pred[1, 0:2, :] = True  # ... and 20 in plane 1, outside it
    out = m.binary_metrics(pred, gt, (1.0, 1.0, 1.0))
    assert (out["TP"], out["FP"], out["FN"], out["TN"]) == (50, 20, 50, 80)
    assert out["Precision"] == pytest.approx(50 / 70) and out["Recall"] == pytest.approx(50 / 100)
    assert out["Specificity"] == pytest.approx(80 / 100)
    assert out["F1"] == pytest.approx(2 * (50 / 70) * 0.5 / (50 / 70 + 0.5)) == pytest.approx(out["Dice"])
    empty = np.zeros_like(gt)
    missed = m.binary_metrics(empty, gt, (1.0, 1.0, 1.0))
    assert (missed["Precision"], missed["Recall"], missed["F1"]) == (0.0, 0.0, 0.0) and missed["Specificity"] == 1.0
    both = m.binary_metrics(empty, empty, (1.0, 1.0, 1.0))
    assert all(math.isnan(both[k]) for k in ("Precision", "Recall", "Specificity", "F1", "Lesion_F1", "Lesion_Dice"))


def test_lesion_wise_detection_hand_checked() -> None:
    """Three reference lesions A, B, C; A found by one component, B by two, C missed; one false alarm."""
    shape = (1, 20, 40)
    gt = _mask(shape, (2, 6, 2, 6), (2, 6, 10, 14), (10, 14, 2, 6))  # A, B, C: 16 voxels each
    p1 = (3, 7, 2, 6)  # 12 voxels in A: Dice(A) = 2*12 / (16 + 16) = 0.75
    p2, p3 = (2, 6, 9, 11), (2, 6, 13, 15)  # 4 voxels of B each, 8 voxels each: Dice(B) = 2*8 / (16 + 16) = 0.5
    p4 = (15, 17, 30, 32)  # false alarm
    pred = _mask(shape, p1, p2, p3, p4)
    out = lesion_metrics(pred, gt)
    assert (out["Lesion_TP"], out["Lesion_FN"], out["Lesion_FP"]) == (2, 1, 1)
    assert out["Lesion_Recall"] == pytest.approx(2 / 3)
    assert out["Lesion_Precision"] == pytest.approx(3 / 4)  # P1, P2, P3 touch a lesion, P4 does not
    assert out["Lesion_F1"] == pytest.approx(2 * 0.75 * (2 / 3) / (0.75 + 2 / 3))
    assert out["Lesion_Dice"] == pytest.approx((0.75 + 0.5 + 0.0) / (3 + 1))  # BraTS 2023: FP counts as 0
    per_class = m.case_metrics(np.where(pred, 2, 0), np.where(gt, 2, 0), (1.0, 1.0, 1.0), [2])[2]
    assert per_class["Lesion_Dice"] == out["Lesion_Dice"]


def test_lesion_components_are_26_connected_and_small_ones_can_be_dropped() -> None:
    a = np.zeros((3, 5, 5), dtype=bool)
    a[0, 0, 0] = a[1, 1, 1] = True  # corner neighbours: one lesion
    a[2, 4, 4] = a[2, 4, 3] = True
    assert components(a)[1] == 2
    assert components(a, min_voxels=3)[1] == 0
    only_fp = lesion_metrics(a, np.zeros_like(a))
    assert (only_fp["Lesion_FP"], only_fp["Lesion_Precision"], only_fp["Lesion_Dice"]) == (2, 0.0, 0.0)
    only_fn = lesion_metrics(np.zeros_like(a), a)
    assert (only_fn["Lesion_FN"], only_fn["Lesion_Recall"], only_fn["Lesion_F1"]) == (2, 0.0, 0.0)


def test_lesion_metrics_on_a_real_label(real_data: Path) -> None:
    """A real hippocampus label against itself, a shifted copy and nothing."""
    import nibabel as nib

    label = np.asarray(nib.load(real_data / "msd-hippocampus" / "labelsTr" / "hippocampus_003.nii.gz").dataobj)
    for value in (1, 2):
        gt = label == value
        n = components(gt)[1]
        assert n >= 1
        same = lesion_metrics(gt, gt)
        assert (same["Lesion_TP"], same["Lesion_F1"], same["Lesion_Dice"]) == (n, 1.0, 1.0)
        shifted = lesion_metrics(np.roll(gt, 1, axis=0), gt)
        assert shifted["Lesion_Recall"] == 1.0 and 0.3 < shifted["Lesion_Dice"] < 1.0
        voxel = m.binary_metrics(np.roll(gt, 1, axis=0), gt, (1.0, 1.0, 1.0))
        if n == 1 and components(np.roll(gt, 1, axis=0))[1] == 1:
            assert shifted["Lesion_Dice"] == pytest.approx(voxel["Dice"])  # one lesion: lesion Dice = Dice
        assert lesion_metrics(np.zeros_like(gt), gt)["Lesion_FN"] == n
