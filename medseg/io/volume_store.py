"""Per-case Zarr store: image + label volumes with their geometry, an OME-Zarr 0.5 image.

Layout of ``<case>.zarr`` (zarr v3)::

    <case>.zarr/                 group; attrs: "ome" (multiscales, axes z/y/x in mm) and "medseg" (below)
      0                          image array (z, y, x); float32 or int16; Blosc/LZ4 + bit shuffle
      labels/                    group; attrs: "ome": {"labels": [names...]}
        <name>/                  group; attrs: "ome": multiscales + "image-label" (colors, properties: names)
          0                      uint8 label array (z, y, x), same shape as the image
      channels/<k>               channel k >= 1 of a multi-channel store (same grid; OME viewers show channel 0)

Every image, label and channel array names its dimensions ``z, y, x`` (``dimension_names``, required by
OME-Zarr 0.5); the OME ``scale`` is the spacing and the ``translation`` the origin along the array axes
(:func:`axis_translation`). ``tests/io/test_ome_zarr.py`` validates every kind of store with
``ome-zarr-models`` and reads it with ``ome-zarr-py``.

``medseg`` attributes: ``schema_version`` (int; ``schema`` in stores of older medseg versions),
``kind`` ("volume" | "preprocessed"), ``case_id``, ``geometry`` (spacing/origin/direction, see
:mod:`medseg.geometry`), ``label_names`` ({"1": "organ", ...}), ``source`` (free-form provenance:
series UIDs, plan hash ...), and ``complete: true``.

Writes are atomic: the store is written under a temporary sibling name, ``complete`` is set
last, then the directory is renamed into place. Readers refuse a store without ``complete``.
"""

from __future__ import annotations

import json
import logging
import shutil
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from medseg.geometry import Geometry
from medseg.io.folder_write import replace_dir
from medseg.io.json_file import SCHEMA_FIELD
from medseg.io.zarr_direct import (
    BLOSC_CLEVEL,
    BLOSC_CNAME,
    BLOSC_SHUFFLE,
    CHUNK_KEY_ENCODING,
    write_array,
    write_group,
)

if TYPE_CHECKING:  # zarr-python is imported on first use: writing a whole case does not need it
    import zarr

_log = logging.getLogger(__name__)

STORE_SCHEMA_VERSION = 1
#: group of the channels after the first of a multi-channel store: ``channels/1``, ``channels/2`` ...
CHANNELS_GROUP = "channels"
#: Names of the array axes: the OME ``multiscales`` axes and every image/label array's ``dimension_names``.
DIMENSION_NAMES = ("z", "y", "x")
AXES = [{"name": name, "type": "space", "unit": "millimeter"} for name in DIMENSION_NAMES]
#: Display colours of label values 1, 2, ... (RGBA; the palette repeats past its end), as ITK-SNAP and 3D Slicer
#: start their label tables.
LABEL_COLORS = [
    (255, 0, 0, 255), (0, 255, 0, 255), (0, 0, 255, 255), (255, 255, 0, 255), (0, 255, 255, 255),
    (255, 0, 255, 255), (255, 239, 213, 255), (0, 0, 205, 255), (205, 133, 63, 255), (210, 180, 140, 255),
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
    channels: list[NDArray[Any]] = field(default_factory=list)  # channels after the first (``image``)
    channel_names: list[str] = field(default_factory=list)  # every channel, first one included; [] = one image

    def __post_init__(self) -> None:
        if self.image.ndim != 3:
            raise ValueError(f"case {self.case_id}: image must be 3D (z, y, x), got shape {self.image.shape}")
        if (self.channels or self.channel_names) and len(self.channel_names) != 1 + len(self.channels):
            raise ValueError(f"case {self.case_id}: {len(self.channel_names)} channel names for "
                             f"{1 + len(self.channels)} channels")
        for k, ch in enumerate(self.channels, start=1):
            if ch.shape != self.image.shape:
                raise ValueError(f"case {self.case_id}: channel {k} shape {ch.shape} != image shape {self.image.shape}")
        for name, lab in self.labels.items():
            if lab.shape != self.image.shape:
                raise ValueError(
                    f"case {self.case_id}: label {name!r} shape {lab.shape} != image shape {self.image.shape}"
                )


def channel_array_name(k: int) -> str:
    """Array path of channel ``k >= 1`` of a multi-channel store (channel 0 is the image ``0``)."""
    return f"{CHANNELS_GROUP}/{int(k)}"


def _channel_meta(names: Sequence[str]) -> dict[str, Any]:
    """The ``channel_names`` attribute, written only by multi-channel stores (single-channel ones are unchanged)."""
    return {"channel_names": list(names)} if names else {}


def axis_translation(geometry: Geometry) -> list[float]:
    """The OME ``translation`` of voxel ``[0, 0, 0]``: the origin's coordinate along each array axis (mm).

    OME-Zarr 0.5 has axis-aligned scale and translation only. Projecting the LPS origin on the axis
    directions (``directionᵀ · origin``) places voxel centres where they are in the patient for any
    axis-aligned orientation (axial: ``(origin_S, origin_P, origin_L)`` in ``z, y, x`` order), and keeps
    co-registered stores of one frame of reference aligned in a viewer for oblique ones. The full geometry
    (direction cosines) is in the ``medseg`` attributes.
    """
    direction = np.asarray(geometry.direction, dtype=float)
    return [float(v) for v in direction.T @ np.asarray(geometry.origin, dtype=float)]


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
                        {"type": "translation", "translation": axis_translation(geometry)},
                    ],
                }
            ],
        }
    ]


def label_color(value: int) -> tuple[int, int, int, int]:
    """RGBA display colour of label ``value`` (``>= 1``) in the stores' ``image-label`` metadata."""
    return LABEL_COLORS[(int(value) - 1) % len(LABEL_COLORS)]


def _label_attrs(name: str, geometry: Geometry, label_names: Mapping[int, str]) -> dict[str, Any]:
    return {"ome": {
        "version": "0.5",
        "multiscales": _multiscales(name, geometry),
        "image-label": {
            "version": "0.5",
            "source": {"image": "../../"},
            "colors": [{"label-value": int(v), "rgba": list(label_color(int(v)))} for v in sorted(label_names)],
            "properties": [{"label-value": int(v), "name": n} for v, n in sorted(label_names.items())],
        },
    }}


def _write_extra(root: Path, name: str, data: NDArray[Any]) -> None:
    """A small extra array written whole (one chunk) at ``root/name`` (e.g. ``"fg/1"``), with parent groups."""
    if name == "0" or name.split("/")[0] == "labels":
        raise ValueError(f"{root}: extra array {name!r} clashes with image/labels")
    parts = name.split("/")
    for depth in range(1, len(parts)):  # intermediate groups, as zarr's create_array makes them
        group = root.joinpath(*parts[:depth])
        if not (group / "zarr.json").is_file():
            write_group(group)
    write_array(root.joinpath(*parts), data, tuple(max(1, s) for s in data.shape))


def _chunks(shape: tuple[int, ...], chunks: tuple[int, int, int] | None) -> tuple[int, ...]:
    if chunks is None:
        chunks = (64, 128, 128)
    return tuple(max(1, min(c, s)) for c, s in zip(chunks, shape, strict=True))


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
    if not path.parent.is_dir():
        path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.partial-{uuid.uuid4().hex[:8]}")
    try:
        ch = _chunks(case.image.shape, chunks)
        tmp.mkdir()  # parents before children: one mkdir per directory
        write_array(tmp / "0", case.image, ch, DIMENSION_NAMES)
        write_group(tmp / "labels", {"ome": {"version": "0.5", "labels": sorted(case.labels)}})
        for name, lab in case.labels.items():
            write_group(tmp / "labels" / name, _label_attrs(name, case.geometry, case.label_names))
            write_array(tmp / "labels" / name / "0", lab.astype(np.uint8, copy=False), ch, DIMENSION_NAMES)
        if case.channels:
            write_group(tmp / CHANNELS_GROUP)
        for k, channel in enumerate(case.channels, start=1):
            write_array(tmp / CHANNELS_GROUP / str(k), channel, ch, DIMENSION_NAMES)
        for name, extra in (extra_arrays or {}).items():
            _write_extra(tmp, name, extra)
        meta: dict[str, Any] = {
            SCHEMA_FIELD: STORE_SCHEMA_VERSION,
            "kind": case.kind,
            "case_id": case.case_id,
            "geometry": case.geometry.to_dict(),
            "label_names": {str(k): v for k, v in sorted(case.label_names.items())},
            "source": case.source,
            **_channel_meta(case.channel_names),
            "complete": True,  # the whole store becomes visible at once by the rename below
        }
        # the root group (with the completion marker) is written last
        write_group(tmp, {"ome": {"version": "0.5", "multiscales": _multiscales(case.case_id, case.geometry)},
                          "medseg": meta})
        replace_dir(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return path


def _root_attributes(path: Path) -> dict[str, Any] | None:
    """Attributes of the Zarr v3 group at ``path`` (read from its ``zarr.json``), None when there is none."""
    try:
        doc = json.loads((Path(path) / "zarr.json").read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(doc, dict) or doc.get("node_type") != "group":
        return None
    attrs = doc.get("attributes")
    return attrs if isinstance(attrs, dict) else None


def is_complete(path: Path) -> bool:
    """True when ``path`` is a finished medseg store."""
    meta = (_root_attributes(path) or {}).get("medseg")
    return isinstance(meta, Mapping) and bool(meta.get("complete"))


def read_meta(path: Path) -> dict[str, Any]:
    """Return the ``medseg`` attributes of a completed store (raises IncompleteStoreError otherwise)."""
    meta = (_root_attributes(path) or {}).get("medseg")
    if not (isinstance(meta, Mapping) and meta.get("complete")):
        raise IncompleteStoreError(f"{path} is missing or was not completed (interrupted write?)")
    return dict(meta)


def read_case(path: Path, labels: bool = True) -> CaseVolume:
    """Read a completed store into memory."""
    import zarr

    meta = read_meta(path)
    root = zarr.open_group(str(path), mode="r")
    image = np.asarray(_array(root, "0")[...])
    names = [str(n) for n in meta.get("channel_names") or []]
    channels = [np.asarray(_array(root, channel_array_name(k))[...]) for k in range(1, len(names))]
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
        channels=channels,
        channel_names=names,
    )


def _array(root: zarr.Group, name: str) -> zarr.Array:
    import zarr

    arr = root[name]
    if not isinstance(arr, zarr.Array):
        raise IncompleteStoreError(f"{root.store_path}/{name} is a group, not an array")
    return arr


def open_array(path: Path, name: str = "0") -> zarr.Array:
    """Open one array of a completed store lazily (e.g. ``"0"`` or ``"labels/gt/0"``)."""
    import zarr

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


class CaseWriter:
    """A store being written by :func:`case_writer`: fill the arrays by slices, then leave the block.

    Attributes:
        image: the image array ``0`` (zarr, ``(z, y, x)``), written e.g. ``writer.image[z0:z1] = slab``;
            the first channel of a multi-channel store (:attr:`channel_arrays` holds them all).
        labels: label name -> uint8 label array ``labels/<name>/0`` of the image's shape.
        source: provenance attributes, stored when the block exits (may be updated until then).
    """

    def __init__(self, root: Path, image: zarr.Array, labels: dict[str, zarr.Array], source: dict[str, Any]):
        self.root = root
        self.image = image
        self.labels = labels
        self.source = source
        self.channel_arrays: list[zarr.Array] = [image]

    def add_array(self, name: str, data: NDArray[Any]) -> None:
        """Write a small extra array whole (one chunk), e.g. ``"fg/1"`` (see :func:`write_case`)."""
        _write_extra(self.root, name, np.asarray(data))


def _new_array(group: zarr.Group, name: str, shape: tuple[int, ...], dtype: Any, chunks: tuple[int, ...]) -> zarr.Array:
    from zarr.codecs import BloscCodec

    return group.create_array(
        name,
        shape=shape,
        chunks=chunks,
        dtype=dtype,
        compressors=[BloscCodec(cname=BLOSC_CNAME, clevel=BLOSC_CLEVEL, shuffle=BLOSC_SHUFFLE)],
        chunk_key_encoding=dict(CHUNK_KEY_ENCODING),
        fill_value=0,
        dimension_names=DIMENSION_NAMES,
    )


@contextmanager
def case_writer(
    path: Path,
    case_id: str,
    shape: tuple[int, int, int],
    dtype: Any,
    geometry: Geometry,
    *,
    labels: Sequence[str] = (),
    label_names: Mapping[int, str] | None = None,
    source: Mapping[str, Any] | None = None,
    kind: str = "volume",
    chunks: tuple[int, int, int] | None = None,
    channel_names: Sequence[str] = (),
) -> Iterator[CaseWriter]:
    """Write a store incrementally (volumes too large to hold twice in memory); same layout as :func:`write_case`.

    The arrays are created empty (fill value 0) under a hidden temporary name; the caller writes
    slices into them inside the ``with`` block. On a normal exit the attributes are written, the
    completion marker last, and the store is renamed into place atomically (replacing ``path``);
    on an exception the temporary store is removed and ``path`` is left untouched. With
    ``channel_names`` (two or more), ``writer.channel_arrays`` holds one array per channel.

    Example::

        with case_writer(path, "case_1", shape, np.int16, geometry, labels=["gt"]) as w:
            for z0 in range(0, shape[0], 64):
                w.image[z0 : z0 + 64] = slab(z0)
    """
    import zarr

    path = Path(path)
    if len(shape) != 3:
        raise ValueError(f"case {case_id}: image must be 3D (z, y, x), got shape {shape}")
    names = dict(label_names or {})
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.partial-{uuid.uuid4().hex[:8]}")
    try:
        root = zarr.open_group(str(tmp), mode="w", zarr_format=3)
        ch = _chunks(tuple(shape), chunks)
        image = _new_array(root, "0", tuple(shape), dtype, ch)
        labels_group = root.require_group("labels")
        label_arrays = {
            name: _new_array(labels_group.require_group(name), "0", tuple(shape), np.uint8, ch) for name in labels
        }
        writer = CaseWriter(tmp, image, label_arrays, dict(source or {}))
        if len(channel_names) > 1:
            group = root.require_group(CHANNELS_GROUP)
            writer.channel_arrays += [_new_array(group, str(k), tuple(shape), dtype, ch)
                                      for k in range(1, len(channel_names))]
        yield writer
        write_group(tmp / "labels", {"ome": {"version": "0.5", "labels": sorted(label_arrays)}})
        for name in label_arrays:
            write_group(tmp / "labels" / name, _label_attrs(name, geometry, names))
        meta: dict[str, Any] = {
            SCHEMA_FIELD: STORE_SCHEMA_VERSION,
            "kind": kind,
            "case_id": case_id,
            "geometry": geometry.to_dict(),
            "label_names": {str(k): v for k, v in sorted(names.items())},
            "source": writer.source,
            **_channel_meta(channel_names if len(channel_names) > 1 else ()),
            "complete": True,  # the whole store becomes visible at once by the rename below
        }
        # the root group (with the completion marker) is written last
        write_group(tmp, {"ome": {"version": "0.5", "multiscales": _multiscales(case_id, geometry)}, "medseg": meta})
        replace_dir(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def clean_partial_stores(folder: Path) -> int:
    """Remove temporary store folders of interrupted writes (``.<case>.zarr.partial-*`` / ``.old-*``).

    :func:`medseg.io.volume_store.write_case` writes under such a hidden sibling name and renames it
    into place, so a worker killed mid-write leaves one behind; it is never read (readers only see
    ``<case>.zarr``), only deleted here. Call it only while no other run writes into ``folder``.

    Returns:
        The number of folders removed.
    """
    removed = 0
    if not folder.is_dir():
        return 0
    for entry in folder.iterdir():
        if entry.name.startswith(".") and (".zarr.partial-" in entry.name or ".zarr.old-" in entry.name):
            shutil.rmtree(entry, ignore_errors=True)
            removed += 1
    if removed:
        _log.info("removed %d temporary store folder(s) of interrupted writes in %s", removed, folder)
    return removed
