"""Foreground voxel locations of a preprocessed case (for foreground oversampling of training patches).

Stored locations are read by :func:`medseg.io.case_arrays.read_foreground_locations` (arrays
``fg/<class>`` written by the preprocess stage); without them they are computed from the
ground-truth label.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from medseg.io.case_arrays import open_label, read_foreground_locations
from medseg.io.volume_store import read_meta

#: Locations kept per class when computing them from the label (nnU-Net keeps ~10k).
MAX_PER_CLASS = 10_000


def compute_locations(
    label: NDArray[np.integer], classes: list[int], seed: int, max_per_class: int = MAX_PER_CLASS
) -> dict[int, NDArray[np.int64]]:
    """``np.argwhere(label == c)`` per class, subsampled to ``max_per_class`` with a seeded RNG.

    Args:
        label: ``(z, y, x)`` integer label volume.
        classes: foreground class indices to report (absent classes map to an empty ``(0, 3)`` array).
        seed: subsampling seed (same inputs -> same output).
        max_per_class: cap on the number of locations per class.
    """
    rng = np.random.default_rng(seed)
    out: dict[int, NDArray[np.int64]] = {}
    for c in classes:
        loc = np.argwhere(label == c).astype(np.int64)
        if len(loc) > max_per_class:
            loc = loc[np.sort(rng.choice(len(loc), size=max_per_class, replace=False))]
        out[c] = loc
    return out


def foreground_locations(store_path: Path) -> dict[int, NDArray[np.int64]]:
    """Foreground voxel locations ``{class: (N, 3) int64 (z, y, x)}`` of a preprocessed store.

    Stored locations (see :func:`~medseg.io.case_arrays.read_foreground_locations`) win; otherwise they are computed
    from ``labels/gt`` with a subsample seeded by the case id. Classes come from the store's
    ``label_names`` (plus any class present in the label).
    """
    path = Path(store_path)
    stored = read_foreground_locations(path)
    if stored is not None:
        return {c: loc.astype(np.int64, copy=False) for c, loc in stored.items()}
    meta = read_meta(path)
    label = np.asarray(open_label(path)[...])
    classes = sorted({int(k) for k in meta.get("label_names", {})} | {int(v) for v in np.unique(label) if v > 0})
    seed = int.from_bytes(hashlib.sha256(str(meta.get("case_id", path.name)).encode()).digest()[:4], "big")
    return compute_locations(label, classes, seed)
