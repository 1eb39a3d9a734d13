"""Tiny synthetic ingested volumes for the preprocessing tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from medseg.geometry import Geometry
from medseg.io.volume_store import CaseVolume

MakeCase = Callable[..., Path]


def synthetic_case(
    case_id: str,
    shape: tuple[int, int, int] = (20, 40, 40),
    spacing: tuple[float, float, float] = (2.0, 1.0, 1.0),
    modality: str = "MR",
    seed: int = 0,
    labeled: bool = True,
    border: int = 3,
) -> CaseVolume:
    """A body (ellipsoid, zero outside a border) with a sphere (class 1) and a box (class 2)."""
    rng = np.random.default_rng(seed)
    z, y, x = np.meshgrid(*[np.arange(n, dtype=float) for n in shape], indexing="ij")
    c = [n / 2 for n in shape]
    body = ((z - c[0]) / (shape[0] / 2 - border)) ** 2 + ((y - c[1]) / (shape[1] / 2 - border)) ** 2 + (
        (x - c[2]) / (shape[2] / 2 - border)
    ) ** 2 <= 1.0
    if modality == "CT":
        image = np.full(shape, -1000.0)
        image[body] = 40 + 10 * rng.standard_normal(int(body.sum()))
    else:
        image = np.zeros(shape)
        image[body] = 300 + 50 * rng.standard_normal(int(body.sum()))
    r = min(shape[0] * spacing[0], shape[1] * spacing[1]) / 5
    sphere = ((z - c[0]) * spacing[0]) ** 2 + ((y - c[1]) * spacing[1]) ** 2 + (
        (x - c[2] + 4) * spacing[2]
    ) ** 2 <= r**2
    gt = np.zeros(shape, np.uint8)
    gt[sphere & body] = 1
    box = (
        slice(shape[0] // 3, shape[0] // 3 + 4),
        slice(6, 12),
        slice(shape[2] // 2 + 4, shape[2] // 2 + 10),
    )
    gt[box] = 2
    image[sphere & body] += 200 if modality == "CT" else 150
    image[box] += 100
    return CaseVolume(
        case_id=case_id,
        image=image.astype(np.int16 if modality == "CT" else np.float32),
        geometry=Geometry.create(spacing=spacing, origin=(-10.0, 20.0, 5.0)),
        labels={"gt": gt} if labeled else {},
        label_names={1: "organ", 2: "lesion"} if labeled else {},
        source={"modality": modality, "series_uid": f"1.2.3.{seed}"},
    )
