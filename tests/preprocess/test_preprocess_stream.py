"""Slab-wise preprocessing: streamed from a chunked store == in memory == whole-volume reference."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from preprocess_synthetic import synthetic_case
from scipy import ndimage
from store_compare import assert_same_store

from medseg.io.volume_store import case_writer, read_case, read_meta, write_case
from medseg.plan import Normalization, Plan
from medseg.preprocess.case import preprocess_case, preprocess_image, preprocess_labels
from medseg.preprocess.crop import bbox_slices
from medseg.preprocess.normalize import normalize
from medseg.preprocess.resample import resample_labels_to_shape
from medseg.preprocess.stream import SlabReader, nonzero_bbox


def _plan(modality: str, target: tuple[float, float, float]) -> Plan:
    ct = modality == "CT"
    return Plan(
        modality=modality,
        normalization=Normalization.CT if ct else Normalization.ZSCORE,
        clip_range=(-900.0, 250.0) if ct else None,
        intensity_mean=45.0 if ct else None,
        intensity_std=30.0 if ct else None,
        target_spacing=target,
        median_shape=(16, 32, 32),
        patch_size=(8, 16, 16),
        kernel_sizes=[[3, 3, 3]] * 3,
        strides=[[1, 1, 1], [2, 2, 2], [2, 2, 2]],
        filters=[8, 16, 32],
        num_classes=3,
        label_names={1: "organ", 2: "lesion"},
    )


# (native spacing, target spacing): z unchanged, separate z (nearest), cubic z up, cubic z down
CASES = [
    ((2.0, 1.0, 1.0), (2.0, 0.8, 1.3)),
    ((5.0, 1.0, 1.0), (2.2, 0.9, 0.9)),
    ((2.0, 1.0, 1.0), (1.3, 1.0, 0.7)),
    ((1.0, 0.8, 0.8), (2.3, 1.1, 1.0)),
]


def _reference(image: np.ndarray, spacing: tuple[float, ...], plan: Plan, mask: np.ndarray | None) -> np.ndarray:
    """Whole-volume formulation: normalise the crop, then scipy's 3D / per-slice 2D cubic zoom."""
    normed = normalize(image, plan, mask).astype(np.float64)
    new_shape = [max(1, round(n * s / t)) for n, s, t in zip(image.shape, spacing, plan.target_spacing, strict=True)]
    coeffs_kw = dict(order=3, mode="mirror", grid_mode=True, prefilter=False)
    if spacing[0] / min(spacing[1:]) > 3:  # separate z: 2D per slice, nearest along z
        picks = np.clip(np.floor((np.arange(new_shape[0]) + 0.5) * image.shape[0] / new_shape[0]), 0, None)
        f = [new_shape[1] / image.shape[1], new_shape[2] / image.shape[2]]
        planes = [
            ndimage.zoom(ndimage.spline_filter(normed[int(k)], 3, mode="mirror"), f, **coeffs_kw) for k in picks
        ]
        return np.stack(planes)
    f3 = [n / o for n, o in zip(new_shape, image.shape, strict=True)]
    return ndimage.zoom(ndimage.spline_filter(normed, 3, mode="mirror"), f3, **coeffs_kw)


@pytest.mark.parametrize("modality", ["CT", "MR"])
@pytest.mark.parametrize(("spacing", "target"), CASES)
def test_streamed_store_equals_in_memory_and_reference(
    tmp_path: Path, modality: str, spacing: tuple[float, float, float], target: tuple[float, float, float]
) -> None:
    _check(tmp_path, modality, spacing, target, (24, 40, 36))


@pytest.mark.parametrize(("spacing", "target"), [((1.0, 1.0, 1.0), (1.3, 1.1, 0.9)), ((1.0, 1.0, 1.0), (0.6, 1, 1))])
def test_tall_volume_uses_sliding_z_windows(
    tmp_path: Path, spacing: tuple[float, float, float], target: tuple[float, float, float]
) -> None:
    """Many more slices than one z block + margins: the windowed prefilter equals whole columns."""
    _check(tmp_path, "CT", spacing, target, (190, 20, 18))


def _check(
    tmp_path: Path,
    modality: str,
    spacing: tuple[float, float, float],
    target: tuple[float, float, float],
    shape: tuple[int, int, int],
) -> None:
    case = synthetic_case("s", shape=shape, spacing=spacing, modality=modality, seed=3)
    src = write_case(tmp_path / "s.zarr", case, chunks=(5, 16, 16))  # many small slabs
    plan = _plan(modality, target)
    res = preprocess_case(src, tmp_path / "out.zarr", plan)
    streamed = read_case(tmp_path / "out.zarr")

    pre = preprocess_image(case.image, case.geometry, plan)
    np.testing.assert_array_equal(streamed.image, pre.data)  # bit-identical to the in-memory path
    lab = preprocess_labels(case.labels["gt"], pre)
    np.testing.assert_array_equal(streamed.labels["gt"], lab)
    assert res.shape == pre.data.shape
    assert read_meta(tmp_path / "out.zarr")["source"]["crop_bbox"] == [list(b) for b in pre.crop_bbox]

    cropped = case.image[bbox_slices(pre.crop_bbox)]
    mask = ndimage.binary_fill_holes(cropped != 0) if modality == "MR" else None
    ref = _reference(cropped, spacing, plan, mask)
    assert ref.shape == pre.data.shape
    np.testing.assert_allclose(pre.data, ref, atol=2e-4)
    ref_lab = resample_labels_to_shape(case.labels["gt"][bbox_slices(pre.crop_bbox)], ref.shape, pre.anisotropic_axis)
    assert (ref_lab == lab).mean() > 0.999


def test_nonzero_bbox_matches_the_filled_mask_box() -> None:
    img = np.zeros((30, 20, 25), np.int16)
    img[4:27, 3:15, 6:20] = 5
    img[10:12, 6:8, 9:12] = 0  # an enclosed hole does not change the box
    assert nonzero_bbox(img, step=7) == ((4, 27), (3, 15), (6, 20))
    assert nonzero_bbox(np.zeros((3, 4, 5))) == ((0, 3), (0, 4), (0, 5))


def test_slab_reader_returns_the_requested_rows() -> None:
    data = np.arange(40 * 3 * 4).reshape(40, 3, 4)
    bbox = ((5, 37), (1, 3), (0, 4))
    reader = SlabReader(data, bbox, step=8)
    crop = data[bbox_slices(bbox)]
    for lo, hi in [(0, 3), (2, 9), (9, 10), (0, 32), (30, 32), (4, 20), (1, 2)]:
        np.testing.assert_array_equal(reader.rows(lo, hi), crop[lo:hi])


def test_case_writer_equals_write_case_and_is_atomic(tmp_path: Path) -> None:
    case = synthetic_case("w", shape=(12, 20, 22), modality="CT")
    write_case(tmp_path / "a.zarr", case, chunks=(4, 8, 8), extra_arrays={"fg/1": np.ones((3, 3), np.int32)})
    with case_writer(
        tmp_path / "b.zarr", "w", case.image.shape, case.image.dtype, case.geometry,
        labels=["gt"], label_names=case.label_names, source=case.source, chunks=(4, 8, 8),
    ) as w:
        for z0 in range(0, 12, 5):  # slabs that do not align with the chunks
            w.image[z0 : z0 + 5] = case.image[z0 : z0 + 5]
        w.labels["gt"][...] = case.labels["gt"]
        w.add_array("fg/1", np.ones((3, 3), np.int32))
    assert_same_store(tmp_path / "a.zarr", tmp_path / "b.zarr")

    with pytest.raises(RuntimeError, match="boom"):
        with case_writer(tmp_path / "a.zarr", "w", (2, 2, 2), np.int16, case.geometry) as w:
            w.image[...] = 1
            raise RuntimeError("boom")
    assert_same_store(tmp_path / "a.zarr", tmp_path / "b.zarr")  # the previous store is untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.zarr", "b.zarr"]  # no partial left
