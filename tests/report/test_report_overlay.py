"""Overlay PNG: valid image of the documented size, slice choice, error colours, real CT."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from matplotlib import image as mpimg

from medseg.report.overlay import OVERLAY_SIZE_PX, overlay_png, pick_slice, window_image

REAL = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "real"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _read_png(path: Path) -> np.ndarray:
    assert path.read_bytes()[:8] == PNG_MAGIC
    return np.asarray(mpimg.imread(str(path)))


def _synthetic() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    image = rng.normal(100, 20, size=(10, 48, 64)).astype(np.float32)
    gt = np.zeros(image.shape, dtype=np.uint8)
    gt[3, 10:30, 10:30] = 1
    gt[6, 5:40, 5:50] = 1  # biggest slice
    pred = np.zeros_like(gt)
    pred[6, 5:40, 5:50] = 1
    pred[6, 40:46, 5:50] = 1  # false positives only
    return image, gt, pred


def test_png_valid_and_expected_size(tmp_path: Path) -> None:
    image, gt, pred = _synthetic()
    out = overlay_png(image, gt, pred, tmp_path / "sub" / "case.png", "case cnn", spacing=(3.0, 0.7, 0.7))
    assert out == tmp_path / "sub" / "case.png"
    px = _read_png(out)
    assert px.shape[:2] == (OVERLAY_SIZE_PX[1], OVERLAY_SIZE_PX[0])


def test_pick_slice_most_foreground() -> None:
    _, gt, pred = _synthetic()
    assert pick_slice(gt, pred) == 6
    only_pred = np.zeros_like(gt)
    only_pred[8, :5, :5] = 1
    assert pick_slice(np.zeros_like(gt), only_pred) == 8
    assert pick_slice(np.zeros_like(gt)) == gt.shape[0] // 2


def test_error_panel_shows_false_positives_not_false_negatives(tmp_path: Path) -> None:
    image, gt, pred = _synthetic()
    image[:] = 0.0  # plain black background: only the tint remains
    px = _read_png(overlay_png(image, gt, pred, tmp_path / "fp.png", "fp only", window=(0.5, 1.0)))
    right = px[:, OVERLAY_SIZE_PX[0] // 2 + 20 : -150, :3]  # error panel, left of the legend
    red = (right[..., 0] > 0.45) & (right[..., 1] < 0.2) & (right[..., 2] < 0.2)
    blue = (right[..., 2] > 0.45) & (right[..., 0] < 0.2) & (right[..., 1] < 0.3)
    green = (right[..., 1] > 0.35) & (right[..., 0] < 0.2) & (right[..., 2] < 0.2)
    assert red.sum() > 100 and green.sum() > 1000
    assert blue.sum() == 0
    # swapping roles turns the same voxels into false negatives
    px2 = _read_png(overlay_png(image, pred, gt, tmp_path / "fn.png", "fn only", window=(0.5, 1.0)))
    right2 = px2[:, OVERLAY_SIZE_PX[0] // 2 + 20 : -150, :3]
    blue2 = (right2[..., 2] > 0.45) & (right2[..., 0] < 0.2) & (right2[..., 1] < 0.3)
    assert blue2.sum() > 100


def test_window_image_range() -> None:
    img = np.array([[-1000.0, 40.0], [240.0, 3000.0]])
    w = window_image(img, (40.0, 400.0))
    assert w.min() == 0.0 and w.max() == 1.0 and w[0, 1] == pytest.approx(0.5)
    assert np.all((window_image(img) >= 0) & (window_image(img) <= 1))


def test_shape_mismatch_raises(tmp_path: Path) -> None:
    image, gt, _ = _synthetic()
    with pytest.raises(ValueError, match="shape"):
        overlay_png(image, gt[:, :-1], None, tmp_path / "x.png", "bad")
    with pytest.raises(ValueError, match="slice_index"):
        overlay_png(image, gt, None, tmp_path / "x.png", "bad", slice_index=99)


@pytest.mark.realdata
def test_real_ct_overlay(tmp_path: Path) -> None:
    nib = pytest.importorskip("nibabel")
    base = REAL / "ivadomed-data-testing" / "ct_scan"
    img_f = base / "sub-spleen2" / "ct" / "sub-spleen2_ct.nii.gz"
    seg_f = base / "derivatives" / "labels" / "sub-spleen2" / "ct" / "sub-spleen2_ct_seg-manual.nii.gz"
    if not (img_f.is_file() and seg_f.is_file()):
        pytest.skip(f"real data {base} not found")
    image = np.asarray(nib.load(str(img_f)).dataobj).transpose(2, 1, 0)
    gt = np.asarray(nib.load(str(seg_f)).dataobj).transpose(2, 1, 0)
    pred = np.roll(gt, 3, axis=2)
    out = overlay_png(
        image, gt, pred, tmp_path / "spleen.png", "spleen_2", (5.0, 0.795, 0.795), window=(40, 400)
    )
    px = _read_png(out)
    assert px.shape[:2] == (OVERLAY_SIZE_PX[1], OVERLAY_SIZE_PX[0])
    assert px[..., :3].std() > 0.1  # real content, not a blank canvas


def test_overlay_from_stores(tmp_path: Path) -> None:
    from medseg.evaluation.summary import CasePair
    from medseg.geometry import Geometry
    from medseg.io.volume_store import CaseVolume, write_case
    from medseg.report.overlay import overlay_case_png

    image, gt, pred = _synthetic()
    geo = Geometry.create(spacing=(3.0, 0.7, 0.7), origin=(0.0, 0.0, 0.0))
    gt_store = write_case(tmp_path / "gt.zarr", CaseVolume("c", image, geo, labels={"gt": gt}))
    pred_store = write_case(tmp_path / "pred.zarr", CaseVolume("c", image, geo, labels={"pred": pred}))
    out = overlay_case_png(CasePair("c", pred_path=pred_store, gt_path=gt_store), tmp_path / "c.png", "c cnn")
    assert _read_png(out).shape[:2] == (OVERLAY_SIZE_PX[1], OVERLAY_SIZE_PX[0])
    with pytest.raises(ValueError, match="zarr"):
        overlay_case_png(CasePair("c", pred=pred, gt=gt, spacing=(1.0, 1.0, 1.0)), tmp_path / "x.png", "x")
