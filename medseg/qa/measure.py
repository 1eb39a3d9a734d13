"""Measure one case's prediction stores for QA: volumes per class, model-vs-model Dice, stored confidence.

The label maps (``labels/pred``) are read slab by slab (one chunk of planes at a time, every model's
store in step), so a large case never sits in memory whole; per slab only voxel counts per label value
(each model) and per pair of models the voxels where both carry the same class are kept.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from medseg.geometry import Geometry
from medseg.io.case_arrays import PRED_LABEL, open_label
from medseg.io.volume_store import read_meta
from medseg.qa.confidence import Confidence, read_confidence
from medseg.qa.volumes import volumes_from_counts, voxel_ml

_VALUES = 256  # uint8 label values


@dataclass
class CaseMeasures:
    """What :func:`measure_case` found (inputs of :func:`medseg.qa.signals.case_signals`)."""

    volumes: dict[str, dict[str, float]] = field(default_factory=dict)
    confidences: dict[str, Confidence | None] = field(default_factory=dict)
    agreements: dict[tuple[str, str], float] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)


def mean_dice(counts_a: NDArray[np.int64], counts_b: NDArray[np.int64], overlap: NDArray[np.int64]) -> float:
    """Foreground-mean Dice of two label maps from voxel counts per label value (index = value).

    Classes neither map has are left out; NaN when both maps are empty.
    """
    dices = [2.0 * overlap[v] / (counts_a[v] + counts_b[v]) for v in range(1, len(overlap))
             if counts_a[v] + counts_b[v] > 0]
    return float(np.mean(dices)) if dices else math.nan


def measure_case(stores: Mapping[str, Path]) -> CaseMeasures:
    """Measure the prediction stores of one case (``{model name: <case>.zarr}``).

    A store that cannot be read (missing, incomplete, malformed confidence record) is reported in
    ``errors`` and left out of the other measures; stores on different grids are not compared.
    """
    out = CaseMeasures()
    arrays = {}
    names: dict[str, dict[int, str]] = {}
    spacing: dict[str, tuple[float, float, float]] = {}
    for model, store in stores.items():
        try:
            meta = read_meta(store)
            arrays[model] = open_label(store, PRED_LABEL)
            names[model] = {int(k): str(v) for k, v in meta.get("label_names", {}).items()}
            spacing[model] = Geometry.from_dict(meta["geometry"]).spacing
            out.confidences[model] = read_confidence(store)
        except Exception as exc:  # noqa: BLE001 - one unreadable store is a QA finding, not a crash
            out.errors[model] = f"{type(exc).__name__}: {exc}"
            arrays.pop(model, None)
    if not arrays:
        return out
    counts = {m: np.zeros(_VALUES, dtype=np.int64) for m in arrays}
    shape = {m: tuple(a.shape) for m, a in arrays.items()}
    pairs = [(a, b) for a, b in combinations(arrays, 2) if shape[a] == shape[b]]
    overlap = {p: np.zeros(_VALUES, dtype=np.int64) for p in pairs}
    step = max(1, int(next(iter(arrays.values())).chunks[0]))
    for z0 in range(0, max(s[0] for s in shape.values()), step):
        slab = {m: np.asarray(a[z0 : z0 + step], dtype=np.uint8) for m, a in arrays.items() if z0 < shape[m][0]}
        for m, lab in slab.items():
            counts[m] += np.bincount(lab.ravel(), minlength=_VALUES)
        for a, b in pairs:
            same = slab[a][(slab[a] == slab[b]) & (slab[a] != 0)]
            overlap[(a, b)] += np.bincount(same, minlength=_VALUES)
    for m in arrays:
        out.volumes[m] = volumes_from_counts(counts[m], names[m], voxel_ml(spacing[m]))
    for a, b in pairs:
        out.agreements[(a, b)] = mean_dice(counts[a], counts[b], overlap[(a, b)])
    return out
