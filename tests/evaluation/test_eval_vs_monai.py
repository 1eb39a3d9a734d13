"""Cross-check medseg metrics against MONAI 1.6 on the same arrays.

Agreement expected (documented in medseg.evaluation.metrics):
* Dice, HD95 (max of directed 95th percentiles), ASSD, NSD (voxel-count surface Dice) match MONAI
  within float32 rounding (rel 1e-5, abs 1e-4 mm) because both use the same surface definition
  (mask XOR 6-connected erosion, border = background) and Euclidean distances scaled by spacing.
* Intentional differences: one mask empty -> MONAI HD95 = NaN (max of NaN and inf) and ASSD = inf,
  medseg = image diagonal (mm) for both;
  reference empty, prediction non-empty -> MONAI DiceMetric(ignore_empty=True) = NaN, medseg = 0
  (nnU-Net's rule: NaN only when both are empty).
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from monai.metrics import (
    DiceMetric,
    HausdorffDistanceMetric,
    SurfaceDistanceMetric,
    compute_hausdorff_distance,
    compute_surface_dice,
)

from medseg.evaluation import metrics as m

REAL = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "real"
REL, ABS = 1e-5, 1e-4
pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")  # MONAI 1.6 internal deprecation notice


def _t(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.asarray(a, dtype=np.float32)[None, None])


def monai_metrics(
    pred: np.ndarray, gt: np.ndarray, spacing: tuple[float, ...], tol: float
) -> dict[str, float]:
    """MONAI's Dice, HD95, ASSD and NSD for one binary (z, y, x) pair."""
    p, g = _t(pred), _t(gt)
    sp = list(spacing)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dice = DiceMetric(include_background=True, reduction="none", ignore_empty=False)(p, g)
        hd = HausdorffDistanceMetric(include_background=True, percentile=95, reduction="none")(
            p, g, spacing=sp
        )
        asd = SurfaceDistanceMetric(include_background=True, symmetric=True, reduction="none")(
            p, g, spacing=sp
        )
        nsd = compute_surface_dice(p, g, [tol], include_background=True, spacing=sp)
    assert isinstance(dice, torch.Tensor) and isinstance(hd, torch.Tensor) and isinstance(asd, torch.Tensor)
    return {"Dice": dice.item(), "HD95": hd.item(), "ASSD": asd.item(), "NSD": nsd.item()}


def assert_agree(
    pred: np.ndarray, gt: np.ndarray, spacing: tuple[float, float, float], tol: float = 2.0
) -> None:
    ours = m.binary_metrics(pred, gt, spacing, tol)
    ref = monai_metrics(pred, gt, spacing, tol)
    for key, value in ref.items():
        assert ours[key] == pytest.approx(value, rel=REL, abs=ABS), (
            f"{key}: medseg {ours[key]} vs MONAI {value}"
        )


def _ellipsoid(
    shape: tuple[int, int, int], centre: tuple[float, ...], radii: tuple[float, ...]
) -> np.ndarray:
    z, y, x = np.ogrid[: shape[0], : shape[1], : shape[2]]
    return ((z - centre[0]) / radii[0]) ** 2 + ((y - centre[1]) / radii[1]) ** 2 + (
        (x - centre[2]) / radii[2]
    ) ** 2 <= 1


def _shift(a: np.ndarray, offset: tuple[int, int, int]) -> np.ndarray:
    """Translate by whole voxels, filling with background (no wrap-around)."""
    out = np.zeros_like(a)
    src = tuple(slice(max(-o, 0), a.shape[i] - max(o, 0)) for i, o in enumerate(offset))
    dst = tuple(slice(max(o, 0), a.shape[i] - max(-o, 0)) for i, o in enumerate(offset))
    out[dst] = a[src]
    return out


@pytest.mark.parametrize(
    "spacing",
    [(1.0, 1.0, 1.0), (5.0, 0.8, 0.8), (3.0, 0.7, 1.1), (0.5, 2.0, 0.9)],
)
def test_ellipsoids_anisotropic(spacing: tuple[float, float, float]) -> None:
    shape = (24, 40, 36)
    gt = _ellipsoid(shape, (12, 20, 18), (6, 12, 10))
    pred = _ellipsoid(shape, (13, 22, 17), (5, 13, 9))
    for tol in (0.5, 2.0, 5.0):
        assert_agree(pred, gt, spacing, tol)
    h = compute_hausdorff_distance(
        _t(pred), _t(gt), include_background=True, percentile=95, spacing=list(spacing)
    )
    assert m.hd95(pred, gt, spacing) == pytest.approx(h.item(), rel=REL, abs=ABS)


def test_single_voxel_masks() -> None:
    shape, spacing = (7, 9, 11), (4.0, 0.6, 0.9)
    a = np.zeros(shape, dtype=bool)
    b = np.zeros(shape, dtype=bool)
    a[2, 3, 4] = True
    b[4, 5, 9] = True
    assert_agree(a, b, spacing, tol=2.0)
    assert_agree(a, a, spacing, tol=0.0)


def test_masks_touching_the_border() -> None:
    rng = np.random.default_rng(7)
    gt = np.zeros((10, 20, 20), dtype=bool)
    gt[:6, :12, 5:] = True
    pred = gt ^ (rng.random(gt.shape) < 0.03)
    assert_agree(pred, gt, (2.0, 0.9, 0.9), tol=1.0)


def test_empty_masks_documented_differences() -> None:
    shape, spacing = (6, 8, 8), (3.0, 1.0, 1.0)
    empty = np.zeros(shape, dtype=bool)
    full = np.zeros(shape, dtype=bool)
    full[2:4, 2:6, 2:6] = True
    # both empty: NaN everywhere in medseg; MONAI: NaN for HD/ASSD/NSD too
    ref = monai_metrics(empty, empty, spacing, 2.0)
    ours = m.binary_metrics(empty, empty, spacing)
    for key in ("HD95", "ASSD", "NSD"):
        assert math.isnan(ref[key]) and math.isnan(ours[key]), key
    assert math.isnan(ours["Dice"])
    # one empty: MONAI gives HD95 NaN, ASSD inf and NSD 0; medseg the image diagonal and NSD 0
    for pred, gt in ((empty, full), (full, empty)):
        ref = monai_metrics(pred, gt, spacing, 2.0)
        ours = m.binary_metrics(pred, gt, spacing)
        assert math.isnan(ref["HD95"]) and math.isinf(ref["ASSD"])
        assert ours["HD95"] == pytest.approx(m.image_diagonal_mm(shape, spacing))
        assert ours["ASSD"] == pytest.approx(m.image_diagonal_mm(shape, spacing))
        assert ref["NSD"] == ours["NSD"] == 0.0
        assert ref["Dice"] == ours["Dice"] == 0.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ignore_empty = DiceMetric(include_background=True, reduction="none", ignore_empty=True)(
            _t(full), _t(empty)
        )
    assert isinstance(ignore_empty, torch.Tensor)
    assert math.isnan(ignore_empty.item()) and m.dice(full, empty) == 0.0


def _load_spleen() -> tuple[np.ndarray, tuple[float, float, float]]:
    nib = pytest.importorskip("nibabel")
    path = REAL / "ivadomed-data-testing" / "ct_scan" / "derivatives" / "labels" / "sub-spleen2" / "ct"
    f = path / "sub-spleen2_ct_seg-manual.nii.gz"
    if not f.is_file():
        pytest.skip(f"real data {f} not found")
    img = nib.load(str(f))
    mask = np.asarray(img.dataobj).transpose(2, 1, 0) > 0  # (z, y, x)
    zooms = img.header.get_zooms()
    return mask, (float(zooms[2]), float(zooms[1]), float(zooms[0]))


@pytest.mark.realdata
@pytest.mark.parametrize("offset", [(0, 2, 0), (1, 0, -3), (1, 3, 2)])
def test_real_spleen_mask_vs_shifted_copy(offset: tuple[int, int, int]) -> None:
    gt, spacing = _load_spleen()
    assert spacing[0] == pytest.approx(5.0) and gt.sum() > 1000
    pred = _shift(gt, offset)
    assert_agree(pred, gt, spacing, tol=2.0)
    ours = m.binary_metrics(pred, gt, spacing)
    assert ours["HD95"] > 0 and 0 < ours["Dice"] < 1
    # a pure translation by d mm can never give a directed 95th-percentile distance above d
    shift_mm = math.sqrt(sum((o * s) ** 2 for o, s in zip(offset, spacing, strict=True)))
    assert ours["HD95"] <= shift_mm + 1e-6


@pytest.mark.realdata
def test_real_multilabel_case_metrics_vs_monai() -> None:
    nib = pytest.importorskip("nibabel")
    f = REAL / "itksnap-mricrop" / "MRIcrop-seg.nii.gz"
    if not f.is_file():
        pytest.skip(f"real data {f} not found")
    gt = np.asarray(nib.load(str(f)).dataobj).transpose(2, 1, 0).astype(np.uint8)
    pred = _shift(gt, (0, 1, -1))
    pred[pred == 7] = 8  # a wrong-class error on top of the shift
    spacing = (1.2, 1.0, 0.9)
    labels = list(range(1, 9))
    ours = m.case_metrics(pred, gt, spacing, labels, nsd_tolerance_mm=1.0)
    one_hot = lambda a: torch.from_numpy(np.stack([a == lab for lab in labels])[None].astype(np.float32))  # noqa: E731
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        hd = compute_hausdorff_distance(
            one_hot(pred), one_hot(gt), include_background=True, percentile=95, spacing=list(spacing)
        )[0]
        nsd = compute_surface_dice(
            one_hot(pred), one_hot(gt), [1.0] * 8, include_background=True, spacing=list(spacing)
        )[0]
        dice = DiceMetric(include_background=True, reduction="none", ignore_empty=False)(
            one_hot(pred), one_hot(gt)
        )[0]
    for i, lab in enumerate(labels):
        assert ours[lab]["Dice"] == pytest.approx(dice[i].item(), rel=REL, abs=ABS)
        assert ours[lab]["NSD"] == pytest.approx(nsd[i].item(), rel=REL, abs=ABS)
        if not math.isfinite(hd[i].item()):  # class 7 vanished from the prediction: MONAI NaN
            assert lab == 7 and ours[lab]["HD95"] == pytest.approx(m.image_diagonal_mm(gt.shape, spacing))
        else:
            assert ours[lab]["HD95"] == pytest.approx(hd[i].item(), rel=REL, abs=ABS)
