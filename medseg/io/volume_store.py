"""Per-case Zarr store: image + label volumes with their geometry (OME-Zarr 0.5 style).

Layout of ``<case>.zarr`` (zarr v3)::

    <case>.zarr/                 group; attrs: "ome" (multiscales, axes z/y/x in mm) and "medseg" (below)
      0                          image array (z, y, x); float32 or int16; Blosc/zstd
      labels/                    group; attrs: "ome": {"labels": [names...]}
        <name>/                  group; attrs: "ome": multiscales + "image-label"
          0                      uint8 label array (z, y, x), same shape as the image

``medseg`` attributes: ``schema`` (int), ``kind`` ("volume" | "preprocessed"), ``case_id``,
``geometry`` (spacing/origin/direction, see :mod:`medseg.geometry`), ``label_names``
({"1": "organ", ...}), ``source`` (free-form provenance: series UIDs, plan hash ...), and
``complete: true``.

Writes are atomic: the store is written under a temporary sibling name, ``complete`` is set
last, then the directory is renamed into place. Readers refuse a store without ``complete``.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from numpy.typing import NDArray
from zarr.codecs import BloscCodec

from medseg.geometry import Geometry

SCHEMA_VERSION = 1
AXES = [
    {"name": "z", "type": "space", "unit": "millimeter"},
    {"name": "y", "type": "space", "unit": "millimeter"},
    {"name": "x", "type": "space", "unit": "millimeter"},
]


class IncompleteStoreError(RuntimeError):
    """A store exists but was never completed (crash mid-write) or is not a medseg store."""


@dataclass
class CaseVolume:
    """An image volume, optional label volumes and their shared geometry (arrays are ``(z, y, x)``)."""

    case_id: str
    image: NDArray[Any]
    geometry: Geometry
    labels: dict[str, NDArray[np.uint8]] = field(default_factory=dict)
    label_names: dict[int, str] = field(default_factory=dict)
    source: dict[str, Any] = field(default_factory=dict)
    kind: str = "volume"

    def __post_init__(self) -> None:
        if self.image.ndim != 3:
            raise ValueError(f"case {self.case_id}: image must be 3D (z, y, x), got shape {self.image.shape}")
        for name, lab in self.labels.items():
            if lab.shape != self.image.shape:
                raise ValueError(
                    f"case {self.case_id}: label {name!r} shape {lab.shape} != image shape {self.image.shape}"
                )


def _multiscales(name: str, geometry: Geometry) -> list[dict[str, Any]]:
    return [
        {
            "name": name,
            "axes": AXES,
            "datasets": [
                {
                    "path": "0",
                    "coordinateTransformations": [
                        {"type": "scale", "scale": list(geometry.spacing)},
                        {"type": "translation", "translation": list(geometry.origin)},
                    ],
                }
            ],
        }
    ]


def _chunks(shape: tuple[int, ...], chunks: tuple[int, int, int] | None) -> tuple[int, ...]:
    if chunks is None:
        chunks = (64, 128, 128)
    return tuple(max(1, min(c, s)) for c, s in zip(chunks, shape, strict=True))


def _write_array(group: zarr.Group, name: str, data: NDArray[Any], chunks: tuple[int, ...]) -> None:
    arr = group.create_array(
        name,
        shape=data.shape,
        chunks=chunks,
        dtype=data.dtype,
        compressors=[BloscCodec(cname="zstd", clevel=3, shuffle="bitshuffle")],
        fill_value=0,
    )
    arr[...] = data


def write_case(
    path: Path,
    case: CaseVolume,
    chunks: tuple[int, int, int] | None = None,
    extra_arrays: Mapping[str, NDArray[Any]] | None = None,
) -> Path:
    """Atomically write ``case`` to ``path`` (a ``.zarr`` directory), replacing any previous store.

    ``extra_arrays`` maps a relative array path (e.g. ``"fg/1"``) to a small array written whole
    (one chunk) in the same atomic write; read it back with :func:`open_array`.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.partial-{uuid.uuid4().hex[:8]}")
    try:
        root = zarr.open_group(str(tmp), mode="w", zarr_format=3)
        ch = _chunks(case.image.shape, chunks)
        _write_array(root, "0", np.ascontiguousarray(case.image), ch)
        labels_group = root.require_group("labels")
        labels_group.attrs["ome"] = {"version": "0.5", "labels": sorted(case.labels)}
        for name, lab in case.labels.items():
            lg = labels_group.require_group(name)
            _write_array(lg, "0", np.ascontiguousarray(lab.astype(np.uint8)), ch)
            lg.attrs["ome"] = {
                "version": "0.5",
                "multiscales": _multiscales(name, case.geometry),
                "image-label": {
                    "version": "0.5",
                    "source": {"image": "../../"},
                    "properties": [
                        {"label-value": int(v), "name": n} for v, n in sorted(case.label_names.items())
                    ],
                },
            }
        for name, extra in (extra_arrays or {}).items():
            if name == "0" or name.split("/")[0] == "labels":
                raise ValueError(f"case {case.case_id}: extra array {name!r} clashes with image/labels")
            _write_array(root, name, np.ascontiguousarray(extra), tuple(max(1, s) for s in extra.shape))
        meta: dict[str, Any] = {
            "schema": SCHEMA_VERSION,
            "kind": case.kind,
            "case_id": case.case_id,
            "geometry": case.geometry.to_dict(),
            "label_names": {str(k): v for k, v in sorted(case.label_names.items())},
            "source": case.source,
            "complete": False,
        }
        root.attrs["ome"] = {"version": "0.5", "multiscales": _multiscales(case.case_id, case.geometry)}
        root.attrs["medseg"] = meta
        root.attrs["medseg"] = {**meta, "complete": True}  # completion marker, written last
        _replace_dir(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return path


def _replace_dir(new: Path, target: Path) -> None:
    if target.exists():
        old = target.with_name(f".{target.name}.old-{uuid.uuid4().hex[:8]}")
        os.replace(target, old)
        os.replace(new, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(new, target)


def is_complete(path: Path) -> bool:
    """True when ``path`` is a finished medseg store."""
    try:
        meta = zarr.open_group(str(path), mode="r").attrs.get("medseg")
    except (FileNotFoundError, ValueError, KeyError, zarr.errors.GroupNotFoundError):
        return False
    return isinstance(meta, Mapping) and bool(meta.get("complete"))


def read_meta(path: Path) -> dict[str, Any]:
    """Return the ``medseg`` attributes of a completed store (raises IncompleteStoreError otherwise)."""
    if not is_complete(path):
        raise IncompleteStoreError(f"{path} is missing or was not completed (interrupted write?)")
    meta: Any = zarr.open_group(str(path), mode="r").attrs["medseg"]
    return dict(meta)


def read_case(path: Path, labels: bool = True) -> CaseVolume:
    """Read a completed store into memory."""
    meta = read_meta(path)
    root = zarr.open_group(str(path), mode="r")
    image = np.asarray(_array(root, "0")[...])
    label_arrays: dict[str, NDArray[np.uint8]] = {}
    if labels and "labels" in root:
        ome: Any = root["labels"].attrs.get("ome", {})
        for name in ome.get("labels", []):
            label_arrays[str(name)] = np.asarray(_array(root, f"labels/{name}/0")[...], dtype=np.uint8)
    return CaseVolume(
        case_id=str(meta["case_id"]),
        image=image,
        geometry=Geometry.from_dict(meta["geometry"]),
        labels=label_arrays,
        label_names={int(k): str(v) for k, v in meta.get("label_names", {}).items()},
        source=dict(meta.get("source", {})),
        kind=str(meta.get("kind", "volume")),
    )


def _array(root: zarr.Group, name: str) -> zarr.Array:
    arr = root[name]
    if not isinstance(arr, zarr.Array):
        raise IncompleteStoreError(f"{root.store_path}/{name} is a group, not an array")
    return arr


def open_array(path: Path, name: str = "0") -> zarr.Array:
    """Open one array of a completed store lazily (e.g. ``"0"`` or ``"labels/gt/0"``)."""
    read_meta(path)
    arr = _array(zarr.open_group(str(path), mode="r"), name)
    return arr


def add_label(path: Path, name: str, label: NDArray[np.uint8], label_names: Mapping[int, str]) -> None:
    """Add (or replace) one label volume in a completed store, atomically for the whole store."""
    case = read_case(path)
    case.labels[name] = label.astype(np.uint8)
    for k, v in label_names.items():
        case.label_names.setdefault(int(k), v)
    write_case(path, case)
