"""Foreground voxel locations of a preprocessed case (for foreground oversampling of training patches).

The preprocess stage may store them in one of two forms; this accessor reads either and falls back
to computing them from the ground-truth label:

* arrays ``fg/<class>`` (int, shape ``(N, 3)``, ``(z, y, x)`` voxel indices) inside the store;
* a JSON attribute in the store's ``source`` metadata, ``{"<class>": [[z, y, x], ...]}``, under one of
  :data:`SOURCE_KEYS`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from numpy.typing import NDArray

from medseg.io.volume_store import open_array, read_meta

SOURCE_KEYS = ("foreground_locations", "fg_locations", "class_locations", "fg")
#: Locations kept per class when computing them from the label (nnU-Net keeps ~10k).
MAX_PER_CLASS = 10_000


def _as_locations(value: Any, where: str) -> NDArray[np.int64]:
    arr = np.asarray(value, dtype=np.int64)
    if arr.size == 0:
        return np.zeros((0, 3), dtype=np.int64)
    if arr.ndim != 2 or arr.shape[1] != 3:
        raise ValueError(f"{where}: foreground locations must have shape (N, 3), got {arr.shape}")
    return arr


def _from_arrays(root: zarr.Group, path: Path) -> dict[int, NDArray[np.int64]] | None:
    if "fg" not in root:
        return None
    node = root["fg"]
    if not isinstance(node, zarr.Group):
        return None
    out: dict[int, NDArray[np.int64]] = {}
    for name, child in node.members():
        if not name.isdigit():
            continue
        if isinstance(child, zarr.Group):  # fg/<class>/0 (OME-style single-scale group)
            if "0" not in child:
                continue
            child = child["0"]
        if isinstance(child, zarr.Array):
            out[int(name)] = _as_locations(np.asarray(child[...]), f"{path}/fg/{name}")
    return out


def _from_source(meta: Mapping[str, Any], path: Path) -> dict[int, NDArray[np.int64]] | None:
    source = meta.get("source") or {}
    for key in SOURCE_KEYS:
        value = source.get(key)
        if isinstance(value, Mapping):
            return {int(k): _as_locations(v, f"{path} source.{key}[{k}]") for k, v in value.items()}
    return None


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

    Stored locations (arrays ``fg/<class>`` or a ``source`` attribute) win; otherwise they are computed
    from ``labels/gt`` with a subsample seeded by the case id. Classes come from the store's
    ``label_names`` (plus any class present in the label).
    """
    path = Path(store_path)
    meta = read_meta(path)
    root = zarr.open_group(str(path), mode="r")
    stored = _from_arrays(root, path)
    if stored is None:
        stored = _from_source(meta, path)
    if stored is not None:
        return stored
    label = np.asarray(open_array(path, "labels/gt/0")[...])
    classes = sorted({int(k) for k in meta.get("label_names", {})} | {int(v) for v in np.unique(label) if v > 0})
    seed = int.from_bytes(hashlib.sha256(str(meta.get("case_id", path.name)).encode()).digest()[:4], "big")
    return compute_locations(label, classes, seed)
