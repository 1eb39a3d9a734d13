"""Label volumes in millilitres: what the training labels span, and what a prediction holds.

The training distribution comes from the dataset fingerprint (:mod:`medseg.preprocess.fingerprint`):
each labeled case's voxel count per class (``class_voxels``, on its native grid) times its voxel
volume (``spacing``). Predicted volumes are counted on the prediction's native grid the same way, so
the two compare in physical units whatever the scanner resolution. Besides each class, the whole
foreground (every non-zero class together) is measured under the name :data:`FOREGROUND`.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, Field

from medseg.preprocess.fingerprint import Fingerprint

#: name of the whole foreground (every class > 0 together) among the per-class volumes
FOREGROUND = "foreground"


class VolumeRange(BaseModel):
    """Label volumes of one class over the training cases (ml)."""

    cases: int = Field(description="training cases measured")
    min_ml: float
    median_ml: float
    max_ml: float


def voxel_ml(spacing: tuple[float, float, float] | list[float]) -> float:
    """Volume of one voxel in ml (spacing in mm: mm³ / 1000)."""
    return float(math.prod(float(s) for s in spacing)) / 1000.0


def volumes_from_counts(counts: NDArray[np.int64], label_names: Mapping[int, str], ml_per_voxel: float
                        ) -> dict[str, float]:
    """``{class name: ml}`` for every named class > 0, plus :data:`FOREGROUND`, from voxel counts per label value.

    Args:
        counts: voxels per label value (index = value), e.g. ``np.bincount(label.ravel())``.
        label_names: ``{value: name}`` of the model's classes (0 = background is skipped).
        ml_per_voxel: :func:`voxel_ml` of the grid.
    """
    def count(value: int) -> int:
        return int(counts[value]) if value < len(counts) else 0

    out = {name: count(v) * ml_per_voxel for v, name in sorted(label_names.items()) if v != 0}
    out[FOREGROUND] = float(counts[1:].sum()) * ml_per_voxel
    return out


def label_volumes_ml(label: NDArray[np.uint8], spacing: tuple[float, float, float],
                     label_names: Mapping[int, str]) -> dict[str, float]:
    """``{class name: ml}`` (and :data:`FOREGROUND`) of a ``(z, y, x)`` label map with ``spacing`` (mm)."""
    counts = np.bincount(np.asarray(label, dtype=np.uint8).ravel(), minlength=256).astype(np.int64)
    return volumes_from_counts(counts, label_names, voxel_ml(spacing))


def training_volumes(fingerprint: Fingerprint, case_ids: Collection[str] | None = None) -> dict[str, VolumeRange]:
    """``{class name: VolumeRange}`` (and :data:`FOREGROUND`) over the fingerprint's cases.

    Args:
        fingerprint: the dataset fingerprint.
        case_ids: only these cases (a model's training cases, from its bundle); None or no overlap with the
            fingerprint = every fingerprinted case.

    Returns:
        One range per class of ``fingerprint.label_names`` (a case without the class counts as 0 ml), empty
        when the fingerprint has no cases.
    """
    cases = [c for c in fingerprint.cases if case_ids is None or c.case_id in set(case_ids)]
    if not cases:
        cases = list(fingerprint.cases)
    per_class: dict[str, list[float]] = {}
    for case in cases:
        counts = np.zeros(max([256, *(v + 1 for v in case.class_voxels)]), dtype=np.int64)
        for value, n in case.class_voxels.items():
            counts[value] = n
        for name, ml in volumes_from_counts(counts, fingerprint.label_names, voxel_ml(case.spacing)).items():
            per_class.setdefault(name, []).append(ml)
    return {name: VolumeRange(cases=len(v), min_ml=round(float(np.min(v)), 4),
                              median_ml=round(float(np.median(v)), 4), max_ml=round(float(np.max(v)), 4))
            for name, v in per_class.items()}
