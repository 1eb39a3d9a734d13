"""Preprocessed stores read back with plain ``zarr``: OME-Zarr 0.5 metadata, spacing, integer labels."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
import zarr
from preprocess_synthetic import MakeCase

from medseg.config import MedsegConfig
from medseg.io.volume_store import read_case
from medseg.plan import Plan
from medseg.preprocess.run import run_preprocess
from medseg.workspace import Workspace

OME_SPACE_UNITS = {"angstrom", "micrometer", "millimeter", "centimeter", "meter", "nanometer"}


def _check_multiscales(ome: dict[str, Any], group: zarr.Group, ndim: int) -> list[float]:
    """Validate one OME-Zarr 0.5 ``multiscales`` entry against the spec; return its level-0 scale."""
    assert ome["version"] == "0.5"
    (ms,) = ome["multiscales"]
    axes = ms["axes"]
    assert [a["name"] for a in axes] == ["z", "y", "x"] and len(axes) == ndim
    assert all(a["type"] == "space" and a["unit"] in OME_SPACE_UNITS for a in axes)
    assert ms["datasets"], "multiscales needs at least one dataset"
    for ds in ms["datasets"]:
        arr = group[ds["path"]]
        assert isinstance(arr, zarr.Array) and arr.ndim == ndim
        transforms = ds["coordinateTransformations"]
        assert transforms[0]["type"] == "scale"  # spec: exactly one scale, first
        assert [t["type"] for t in transforms[1:]] in ([], ["translation"])
        assert all(len(t.get("scale", t.get("translation", []))) == ndim for t in transforms)
        assert all(v > 0 for v in transforms[0]["scale"])
    return [float(v) for v in ms["datasets"][0]["coordinateTransformations"][0]["scale"]]


@pytest.mark.parametrize(
    ("spacings", "target"),
    [
        ([(2.0, 1.0, 1.0), (2.5, 0.8, 0.8), (3.0, 0.9, 0.9)], None),  # data-driven target (median)
        ([(5.0, 0.9, 0.9), (5.0, 1.0, 1.0)], (2.5, 0.7, 0.7)),  # separate-z data, overridden target
    ],
)
def test_plain_zarr_readback(
    ws: Workspace,
    cfg: MedsegConfig,
    make_case: MakeCase,
    spacings: list[tuple[float, float, float]],
    target: tuple[float, float, float] | None,
) -> None:
    for i, sp in enumerate(spacings):
        make_case(f"c{i}", spacing=sp, seed=i, shape=(16, 48, 48))
    cfg.preprocess.target_spacing = target
    summary = run_preprocess(ws, cfg, None)
    assert summary.cases_processed == len(spacings)
    plan = Plan.load(ws.plan_path)
    if target is not None:
        assert plan.target_spacing == target

    for i in range(len(spacings)):
        path = ws.preprocessed_case_path(f"c{i}")
        # zarr v3 on disk, readable with nothing but zarr
        assert json.loads((path / "zarr.json").read_text())["zarr_format"] == 3
        root = zarr.open_group(str(path), mode="r")
        image = root["0"]
        assert isinstance(image, zarr.Array) and image.dtype == np.float32
        attrs: Any = root.attrs.asdict()
        scale = _check_multiscales(attrs["ome"], root, 3)
        medseg = attrs["medseg"]
        assert medseg["complete"] is True and medseg["kind"] == "preprocessed"
        assert scale == medseg["geometry"]["spacing"]
        # spacing = native * cropped / new with new = round(cropped * native / target): the only
        # deviation from the target is that rounding, |spacing - target| <= target * 0.5 / new
        for s, t, n in zip(scale, plan.target_spacing, image.shape, strict=True):
            assert abs(s - t) <= t * 0.5 / n + 1e-9, (scale, plan.target_spacing, image.shape)
        assert medseg["source"]["plan_hash"] == plan.plan_hash()

        labels = root["labels"]
        assert isinstance(labels, zarr.Group)
        labels_attrs: Any = labels.attrs.asdict()
        assert labels_attrs["ome"]["labels"] == ["gt"]
        gt_group = labels["gt"]
        assert isinstance(gt_group, zarr.Group)
        gt_attrs: Any = gt_group.attrs.asdict()
        gt_scale = _check_multiscales(gt_attrs["ome"], gt_group, 3)
        assert gt_scale == scale
        image_label = gt_attrs["ome"]["image-label"]
        assert image_label["source"]["image"] == "../../"
        props = {p["label-value"]: p["name"] for p in image_label["properties"]}
        assert props == {1: "organ", 2: "lesion"}
        gt = gt_group["0"]
        assert isinstance(gt, zarr.Array) and np.issubdtype(gt.dtype, np.integer)
        assert gt.shape == image.shape and gt.chunks == image.chunks
        native = read_case(ws.volume_path(f"c{i}")).labels["gt"]
        assert set(np.unique(gt[...]).tolist()) == set(np.unique(native).tolist()) == {0, 1, 2}
        assert np.isfinite(image[...]).all()
