"""The named arrays of a case store (:mod:`medseg.io.volume_store`): the one place that spells their keys.

* the image ``0`` (:data:`IMAGE_ARRAY`, :func:`open_image`); a multi-channel store (``ingest.channels``)
  holds its first channel there and the others at ``channels/<k>`` (:func:`open_channels`), named by the
  ``channel_names`` attribute (:func:`channel_names`);
* label volumes ``labels/<name>/0`` (:func:`label_array_name`, :func:`open_label`); the ground truth
  is :data:`GT_LABEL` (``"gt"``), the only label a preprocessed case has; a prediction store's label map is
  :data:`PRED_LABEL` (``"pred"``);
* foreground voxel locations per class (training oversamples patches centred on them): one int
  array ``fg/<class>`` of shape ``(N, 3)`` (``(z, y, x)`` voxel indices) per class, written by
  :func:`write_foreground_locations` and read by :func:`read_foreground_locations`. Stores made
  for tests may carry them as the ``source`` attribute :data:`FOREGROUND_SOURCE_KEY` instead
  (``{"<class>": [[z, y, x], ...]}``), which the reader accepts too.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from medseg.io.volume_store import CaseWriter, channel_array_name, open_array, read_meta

if TYPE_CHECKING:  # zarr-python is imported on first use, as in volume_store
    import zarr

IMAGE_ARRAY = "0"
GT_LABEL = "gt"
PRED_LABEL = "pred"
FOREGROUND_GROUP = "fg"
FOREGROUND_SOURCE_KEY = "foreground_locations"


def label_array_name(label: str = GT_LABEL) -> str:
    """Array path of the label volume ``label`` inside a store (``"labels/gt/0"``)."""
    return f"labels/{label}/0"


def open_image(path: Path) -> zarr.Array:
    """The image array of a completed store, opened lazily."""
    return open_array(path, IMAGE_ARRAY)


def channel_names(path: Path) -> list[str]:
    """Names of a store's channels (reference first); ``[]`` for a single-channel store."""
    return [str(n) for n in read_meta(path).get("channel_names") or []]


def open_channels(path: Path) -> list[zarr.Array]:
    """Every channel array of a completed store, opened lazily: ``[image]`` for a single-channel store."""
    n = max(1, len(channel_names(path)))
    return [open_image(path)] + [open_array(path, channel_array_name(k)) for k in range(1, n)]


def open_label(path: Path, label: str = GT_LABEL) -> zarr.Array:
    """The label volume ``label`` of a completed store, opened lazily."""
    return open_array(path, label_array_name(label))


def label_volume_names(volume_path: Path) -> list[str]:
    """Names of the label volumes of a store (e.g. ``["gt"]``), without reading them."""
    import zarr

    root = zarr.open_group(str(volume_path), mode="r")
    if "labels" not in root:
        return []
    ome = root["labels"].attrs.get("ome")
    names = ome.get("labels") if isinstance(ome, Mapping) else None
    return [str(n) for n in names] if isinstance(names, list) else []


def slabs(arr: zarr.Array) -> list[tuple[int, int]]:
    """``(z0, z1)`` ranges of whole chunks along the first axis of ``arr`` (read one slab at a time)."""
    step = max(1, int(arr.chunks[0]))
    return [(z0, min(int(arr.shape[0]), z0 + step)) for z0 in range(0, int(arr.shape[0]), step)]


def foreground_array_name(cls: int) -> str:
    """Array path of the foreground locations of class ``cls`` inside a store."""
    return f"{FOREGROUND_GROUP}/{int(cls)}"


def write_foreground_locations(writer: CaseWriter, locations: Mapping[int, NDArray[Any]]) -> None:
    """Store ``{class: (N, 3) (z, y, x) indices}`` in a store being written (one small array per class)."""
    for cls, coords in locations.items():
        writer.add_array(foreground_array_name(cls), coords)


def read_foreground_locations(path: Path) -> dict[int, NDArray[np.integer]] | None:
    """Stored foreground locations ``{class: (N, 3) (z, y, x)}`` of a completed store; None when it has none.

    The arrays ``fg/<class>`` keep their stored dtype (int32 from preprocessing); the ``source``
    attribute form is read as int64.

    Raises:
        ValueError: stored locations are not of shape ``(N, 3)``.
    """
    import zarr

    path = Path(path)
    meta = read_meta(path)
    root = zarr.open_group(str(path), mode="r")
    node = root[FOREGROUND_GROUP] if FOREGROUND_GROUP in root else None
    if isinstance(node, zarr.Group):
        return {
            int(name): _locations(np.asarray(child[...]), f"{path}/{foreground_array_name(int(name))}")
            for name, child in node.members()
            if name.isdigit() and isinstance(child, zarr.Array)
        }
    value = (meta.get("source") or {}).get(FOREGROUND_SOURCE_KEY)
    if isinstance(value, Mapping):
        return {
            int(k): _locations(np.asarray(v, dtype=np.int64), f"{path} source.{FOREGROUND_SOURCE_KEY}[{k}]")
            for k, v in value.items()
        }
    return None


def _locations(arr: NDArray[Any], where: str) -> NDArray[np.integer]:
    if arr.size == 0:
        return np.zeros((0, 3), dtype=arr.dtype if arr.dtype.kind in "iu" else np.int64)
    if arr.ndim != 2 or arr.shape[1] != 3:
        raise ValueError(f"{where}: foreground locations must have shape (N, 3), got {arr.shape}")
    return arr
