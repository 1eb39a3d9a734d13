"""Per-case preprocessing: crop, geometry, restore round trips, the preprocessed store."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from preprocess_synthetic import MakeCase, synthetic_case

from medseg.config import PreprocessConfig, TrainConfig
from medseg.io.case_arrays import read_foreground_locations
from medseg.io.volume_store import open_array, read_case, read_meta
from medseg.plan import Plan
from medseg.preprocess.case import (
    load_preprocessed_image,
    preprocess_case,
    preprocess_image,
    preprocess_labels,
    restore_labels_to_native,
    restore_probabilities_to_native,
)
from medseg.preprocess.crop import bbox_slices
from medseg.preprocess.fingerprint import compute_fingerprint
from medseg.preprocess.normalize import normalize
from medseg.preprocess.planner import make_plan


def _plan(paths: list[Path], target: tuple[float, float, float] | None = None) -> Plan:
    fp = compute_fingerprint(paths, None, num_samples=200)
    cfg = PreprocessConfig.model_validate(dict(target_spacing=target, max_patch_voxels=16 * 32 * 32))
    return make_plan(fp, cfg, TrainConfig.model_validate(dict(filters=[8, 16, 32, 64])))


def test_same_spacing_is_crop_and_normalise_only(make_case: MakeCase) -> None:
    path = make_case("a", spacing=(2.0, 1.0, 1.0))
    plan = _plan([path])
    case = read_case(path)
    pre = preprocess_image(case.image, case.geometry, plan)
    region = bbox_slices(pre.crop_bbox)
    assert pre.data.shape == pre.cropped_shape and pre.data.shape[1] < 40  # zero border cropped
    cropped = case.image[region]
    np.testing.assert_allclose(pre.data, normalize(cropped, plan, cropped != 0), atol=1e-5)
    start = [b[0] for b in pre.crop_bbox]
    np.testing.assert_allclose(pre.geometry.origin, case.geometry.index_to_lps(np.asarray(start)))
    assert pre.geometry.spacing == case.geometry.spacing
    restored = restore_labels_to_native(preprocess_labels(case.labels["gt"], pre), pre)
    np.testing.assert_array_equal(restored, case.labels["gt"])


@pytest.mark.parametrize(
    ("spacing", "target", "axis"),
    [((2.0, 1.0, 1.0), (1.0, 0.5, 0.5), None), ((5.0, 1.0, 1.0), (2.5, 1.0, 1.0), 0)],
)
def test_upsampled_labels_restore(
    make_case: MakeCase,
    spacing: tuple[float, float, float],
    target: tuple[float, float, float],
    axis: int | None,
) -> None:
    path = make_case("a", spacing=spacing)
    plan = _plan([path], target)
    case = read_case(path)
    pre = preprocess_image(case.image, case.geometry, plan)
    assert pre.anisotropic_axis == axis
    expected = tuple(
        2 * n if s != t else n for n, s, t in zip(pre.cropped_shape, spacing, target, strict=True)
    )
    assert pre.data.shape == expected
    lab = preprocess_labels(case.labels["gt"], pre)
    gt = case.labels["gt"]
    assert set(np.unique(lab)) == set(np.unique(gt))
    restored = restore_labels_to_native(lab, pre)
    # one-hot linear interpolation only loses isolated corner voxels of the blobs
    assert (restored == gt).mean() > 0.998
    for cls in (1, 2):
        a, b = restored == cls, gt == cls
        assert 2 * (a & b).sum() / (a.sum() + b.sum()) > 0.97
    # the preprocessed grid covers the same physical extent as the crop (first voxel edges coincide)
    start = np.asarray([b[0] for b in pre.crop_bbox], float)
    edge_native = case.geometry.index_to_lps(start - 0.5)
    edge_pre = pre.geometry.index_to_lps(np.full(3, -0.5))
    np.testing.assert_allclose(edge_pre, edge_native, atol=1e-6)
    np.testing.assert_allclose(pre.geometry.spacing, target)


def test_downsampled_labels_restore_where_resolution_permits(make_case: MakeCase) -> None:
    path = make_case("a", spacing=(1.0, 0.5, 0.5), shape=(32, 64, 64))
    plan = _plan([path], (2.0, 1.0, 1.0))
    case = read_case(path)
    pre = preprocess_image(case.image, case.geometry, plan)
    restored = restore_labels_to_native(preprocess_labels(case.labels["gt"], pre), pre)
    gt = case.labels["gt"]
    sphere, restored_sphere = gt == 1, restored == 1
    dice = 2 * (sphere & restored_sphere).sum() / (sphere.sum() + restored_sphere.sum())
    assert dice > 0.85
    # the small 4x6x6 box survives with about its volume
    assert 0.5 < (restored == 2).sum() / (gt == 2).sum() < 1.5


def test_probabilities_restore(make_case: MakeCase) -> None:
    path = make_case("a", spacing=(2.0, 1.0, 1.0))
    plan = _plan([path], (1.0, 0.5, 0.5))
    case = read_case(path)
    pre = preprocess_image(case.image, case.geometry, plan)
    lab = preprocess_labels(case.labels["gt"], pre)
    prob = np.stack([(lab == c).astype(np.float32) for c in range(3)])
    native = restore_probabilities_to_native(prob, pre)
    assert native.shape == (3, *case.image.shape) and native.dtype == np.float32
    np.testing.assert_allclose(native.sum(axis=0), 1.0, atol=1e-5)
    outside = np.ones(case.image.shape, bool)
    outside[bbox_slices(pre.crop_bbox)] = False
    assert outside.any() and np.all(native[0][outside] == 1.0)
    agree = (native.argmax(axis=0) == case.labels["gt"]).mean()
    assert agree > 0.99
    with pytest.raises(ValueError, match="probabilities shape"):
        restore_probabilities_to_native(prob[:, :-1], pre)


def test_ct_background_is_not_cropped(make_case: MakeCase) -> None:
    path = make_case("a", modality="CT")
    plan = _plan([path])
    case = read_case(path)
    pre = preprocess_image(case.image, case.geometry, plan)
    assert pre.crop_bbox == ((0, 20), (0, 40), (0, 40))
    assert plan.clip_range is not None
    assert pre.data.min() >= (plan.clip_range[0] - plan.intensity_mean) / plan.intensity_std - 1e-3  # type: ignore[operator]


def test_preprocess_case_store(make_case: MakeCase, tmp_path: Path) -> None:
    path = make_case("a", spacing=(2.0, 1.0, 1.0))
    plan = _plan([path], (1.0, 1.0, 1.0))
    out = tmp_path / "a.zarr"
    res = preprocess_case(path, out, plan)
    case = read_case(out)
    assert case.kind == "preprocessed" and case.image.dtype == np.float32
    assert case.image.shape == res.shape and res.native_shape == (20, 40, 40)
    assert set(np.unique(case.labels["gt"])) == {0, 1, 2}
    assert case.label_names == {1: "organ", 2: "lesion"}
    src = read_meta(out)["source"]
    assert src["plan_hash"] == plan.plan_hash() and len(src["source_hash"]) == 16
    assert src["native_shape"] == [20, 40, 40] and src["source_case"]["modality"] == "MR"
    assert src["crop_bbox"][1][0] > 0
    assert list(open_array(out, "0").chunks) == [
        min(p, s) for p, s in zip(plan.patch_size, case.image.shape, strict=True)
    ]
    fg = read_foreground_locations(out)
    assert set(fg) == {1, 2}
    for cls, coords in fg.items():
        assert coords.dtype == np.int32 and coords.shape[1] == 3
        assert 0 < len(coords) <= 1000 and len(coords) == res.fg_counts[cls]
        assert np.all(case.labels["gt"][tuple(coords.T)] == cls)
    assert len(fg[1]) == 1000  # the sphere has more than 1000 voxels: capped
    # deterministic
    preprocess_case(path, tmp_path / "b.zarr", plan)
    np.testing.assert_array_equal(read_foreground_locations(tmp_path / "b.zarr")[1], fg[1])
    np.testing.assert_array_equal(read_case(tmp_path / "b.zarr").image, case.image)


def test_label_outside_plan_classes_is_rejected(make_case: MakeCase, tmp_path: Path) -> None:
    plan = _plan([make_case("a")])
    bad = synthetic_case("b")
    bad.labels["gt"][0, 0, 0] = 9
    from medseg.io.volume_store import write_case

    path = write_case(tmp_path / "b.zarr", bad)
    with pytest.raises(ValueError, match=r"label values \[9\]"):
        preprocess_case(path, tmp_path / "out.zarr", plan)


def test_load_preprocessed_image_restores_the_stored_labels(make_case: MakeCase, tmp_path: Path) -> None:
    path = make_case("a", spacing=(2.0, 1.0, 1.0))
    plan = _plan([path], (1.0, 0.5, 0.5))
    preprocess_case(path, tmp_path / "a.zarr", plan)
    pre = load_preprocessed_image(tmp_path / "a.zarr")
    native = read_case(path)
    fresh = preprocess_image(native.image, native.geometry, plan)
    np.testing.assert_array_equal(pre.data, fresh.data)
    assert (pre.crop_bbox, pre.native_shape, pre.geometry) == (
        fresh.crop_bbox,
        fresh.native_shape,
        fresh.geometry,
    )
    stored = read_case(tmp_path / "a.zarr").labels["gt"]
    restored = restore_labels_to_native(stored, pre)
    assert (restored == native.labels["gt"]).mean() > 0.998
    with pytest.raises(ValueError, match="not a preprocessed store"):
        load_preprocessed_image(path)
