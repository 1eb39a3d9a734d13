"""Tiny synthetic CT phantoms written as a *preprocessed* workspace (plan + splits + case stores).

Independent of medseg.preprocess so training/inference tests run on their own: organ ellipsoid
(~120 HU) inside a body (~40 HU) with 1-3 hypodense lesions (radius 8-16 mm, label 2), noise 15 HU,
already at the target spacing and CT-normalised ``(HU - 80) / 60``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from medseg.config import MedsegConfig
from medseg.geometry import Geometry
from medseg.io.volume_store import CaseVolume, write_case
from medseg.plan import Normalization, Plan
from medseg.splits import Splits
from medseg.workspace import Workspace

LABEL_NAMES = {1: "organ", 2: "lesion"}
SPACING = (3.5, 1.5, 1.5)
HU_MEAN, HU_STD = 80.0, 60.0


def phantom_hu(
    shape: tuple[int, int, int], seed: int, spacing: tuple[float, float, float] = SPACING
) -> tuple[NDArray[np.float32], NDArray[np.uint8]]:
    """``(image_hu, label)`` of shape ``shape`` (z, y, x); labels 1 organ, 2 lesion."""
    rng = np.random.default_rng(seed)
    zz, yy, xx = np.meshgrid(
        *[(np.arange(n) - (n - 1) / 2) * s for n, s in zip(shape, spacing, strict=True)], indexing="ij"
    )
    extent = np.array(shape) * np.array(spacing) / 2  # half-size in mm
    image = np.full(shape, -1000.0, dtype=np.float32)
    body = (yy / (0.9 * extent[1])) ** 2 + (xx / (0.95 * extent[2])) ** 2 <= 1
    image[body] = 40.0
    centre = rng.uniform(-0.12, 0.12, 3) * extent
    radii = np.array([0.7 * extent[0], 0.45 * extent[1], 0.5 * extent[2]]) * rng.uniform(0.85, 1.1, 3)
    d = sum(((g - c) / r) ** 2 for g, c, r in zip((zz, yy, xx), centre, radii, strict=True))
    organ = d <= 1
    label = np.zeros(shape, dtype=np.uint8)
    label[organ] = 1
    image[organ] = 120.0
    for _ in range(int(rng.integers(1, 4))):
        r = float(rng.uniform(8, 16))
        for _try in range(20):  # keep the lesion inside the organ
            c = centre + rng.uniform(-0.5, 0.5, 3) * np.maximum(radii - r, 0)
            les = sum(((g - cc) / r) ** 2 for g, cc in zip((zz, yy, xx), c, strict=True)) <= 1
            if les.any() and np.all(organ[les]):
                break
        les &= organ
        label[les] = 2
        image[les] = float(rng.uniform(20, 40))
    image += rng.normal(0, 15, shape).astype(np.float32)
    return image, label


def normalise(image_hu: NDArray[np.float32]) -> NDArray[np.float32]:
    return ((np.clip(image_hu, -200, 300) - HU_MEAN) / HU_STD).astype(np.float32)


def make_plan(
    patch_size: tuple[int, int, int] = (16, 32, 32),
    filters: tuple[int, ...] = (4, 8, 16, 32),
    spatial_dims: int = 3,
    median_shape: tuple[int, int, int] = (20, 48, 48),
) -> Plan:
    """A plan whose topology fits ``patch_size`` (3D: 4 levels; 2D: (1, y, x) patch, 4 levels)."""
    if spatial_dims == 3:
        kernels = [[1, 3, 3], [3, 3, 3], [3, 3, 3], [3, 3, 3]]
        strides = [[1, 1, 1], [1, 2, 2], [2, 2, 2], [2, 2, 2]]
    else:
        kernels = [[3, 3]] * 4
        strides = [[1, 1], [2, 2], [2, 2], [2, 2]]
    return Plan(
        modality="CT",
        normalization=Normalization.CT,
        clip_range=(-200.0, 300.0),
        intensity_mean=HU_MEAN,
        intensity_std=HU_STD,
        target_spacing=SPACING,
        median_shape=median_shape,
        patch_size=patch_size,
        spatial_dims=spatial_dims,
        kernel_sizes=kernels,
        strides=strides,
        filters=list(filters),
        num_classes=3,
        label_names=dict(LABEL_NAMES),
    )


def write_phantom_workspace(
    root: Path,
    n_train: int = 3,
    n_val: int = 1,
    shape: tuple[int, int, int] = (20, 48, 48),
    plan: Plan | None = None,
    seed: int = 0,
    store_fg: bool = False,
) -> Workspace:
    """Write plan, splits and preprocessed stores ``case000...`` (train first, then val) under ``root``."""
    ws = Workspace.at(root).ensure()
    plan = plan or make_plan(median_shape=shape)
    plan.save(ws.plan_path)
    ids = [f"case{i:03d}" for i in range(n_train + n_val)]
    Splits(train=ids[:n_train], val=ids[n_train:], test=[]).save(ws.splits_path)
    for i, cid in enumerate(ids):
        hu, label = phantom_hu(shape, seed * 1000 + i)
        source: dict[str, object] = {"phantom_seed": seed * 1000 + i, "plan_hash": plan.plan_hash()}
        if store_fg:
            source["foreground_locations"] = {str(c): np.argwhere(label == c)[::7].tolist() for c in LABEL_NAMES}
        write_case(
            ws.preprocessed_case_path(cid),
            CaseVolume(
                case_id=cid,
                image=normalise(hu),
                geometry=Geometry.create(SPACING, (0.0, 0.0, 0.0)),
                labels={"gt": label},
                label_names=dict(LABEL_NAMES),
                source=source,
                kind="preprocessed",
            ),
        )
    return ws


def tiny_config(**train: object) -> MedsegConfig:
    """Smallest meaningful training config for the phantom plan (overrides go into ``train``)."""
    base: dict[str, object] = {
        "max_epochs": 1,
        "iterations_per_epoch": 2,
        "batch_size": 2,
        "val_every": 1,
        "filters": [4, 8, 16, 32],
        "device": "cpu",
        "num_threads": 2,
    }
    base.update(train)
    return MedsegConfig.model_validate({"seed": 0, "train": base})
