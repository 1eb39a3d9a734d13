"""Write small Zarr v3 groups and arrays straight to disk (no zarr-python round trips).

Ingest writes one store per series, hundreds of thousands of them per archive. zarr-python's
write path costs ~20 ms per store on this kind of machine (a dozen synchronous hops through its
event-loop thread for groups, arrays, attributes and chunks), several times the cost of the data
itself. This module writes the stores directly: ``zarr.json`` documents with the metadata
zarr-python itself writes (compact JSON rather than indented), and chunks encoded by the same
numcodecs Blosc codec. Stores written here are read by zarr-python (and any Zarr v3 reader) like
any other; the tests compare both writers' metadata documents and chunk bytes.

Layout written (Zarr v3 spec): ``<array>/zarr.json``, chunks at ``<array>/c.<i>.<j>.<k>``
(default chunk-key encoding with separator ``.``: no directory per chunk row, which saves a dozen
mkdir calls per store), each chunk the full chunk shape (edge chunks padded
with the fill value), codecs ``bytes`` (little endian) + ``blosc``. Chunks equal to the fill value
everywhere are not written (zarr-python's ``write_empty_chunks=False``).
"""

from __future__ import annotations

import itertools
import json
import math
import os
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any, Final

import numpy as np
from numcodecs import Blosc
from numpy.typing import NDArray

#: Blosc settings of every medseg array (LZ4 level 5, byte shuffle): see docs/ARCHITECTURE.md.
BLOSC_CNAME: Final = "lz4"
BLOSC_CLEVEL: Final = 5
BLOSC_SHUFFLE: Final = "shuffle"
#: chunk keys ``c.0.0.0``: every chunk file sits next to its array's zarr.json
CHUNK_KEY_ENCODING: Final = {"name": "default", "separator": "."}
_SHUFFLE_CODES = {"noshuffle": 0, "shuffle": 1, "bitshuffle": 2}


@lru_cache(maxsize=16)
def _codec(typesize: int) -> Blosc:
    return Blosc(cname=BLOSC_CNAME, clevel=BLOSC_CLEVEL, shuffle=_SHUFFLE_CODES[BLOSC_SHUFFLE], blocksize=0,
                 typesize=typesize)


def _fill_value(dtype: np.dtype[Any]) -> Any:
    if dtype.kind == "b":
        return False
    if dtype.kind == "f":
        return 0.0
    return 0


def array_metadata(shape: tuple[int, ...], chunks: tuple[int, ...], dtype: np.dtype[Any],
                   attributes: dict[str, Any] | None = None,
                   dimension_names: Sequence[str] | None = None) -> dict[str, Any]:
    """The ``zarr.json`` document of a Zarr v3 array as zarr-python 3 writes it (medseg's Blosc codec).

    ``dimension_names`` (one per axis, e.g. ``("z", "y", "x")``) is what OME-Zarr 0.5 requires of the arrays
    of an image: the names of its ``multiscales`` axes.
    """
    dtype = np.dtype(dtype)
    if dimension_names is not None and len(dimension_names) != len(shape):
        raise ValueError(f"dimension_names {list(dimension_names)} do not match the {len(shape)} axes of the array")
    return {
        "shape": list(shape),
        "data_type": dtype.name,
        "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": list(chunks)}},
        "chunk_key_encoding": {"name": "default", "configuration": {"separator": CHUNK_KEY_ENCODING["separator"]}},
        "fill_value": _fill_value(dtype),
        "codecs": [
            {"name": "bytes", "configuration": {"endian": "little"}} if dtype.itemsize > 1 else {"name": "bytes"},
            {
                "name": "blosc",
                "configuration": {
                    "typesize": dtype.itemsize,
                    "cname": BLOSC_CNAME,
                    "clevel": BLOSC_CLEVEL,
                    "shuffle": BLOSC_SHUFFLE,
                    "blocksize": 0,
                },
            },
        ],
        "attributes": attributes or {},
        "zarr_format": 3,
        "node_type": "array",
        "storage_transformers": [],
        **({"dimension_names": list(dimension_names)} if dimension_names is not None else {}),
    }


def _makedirs(path: str) -> None:
    """``mkdir -p``, costing one syscall when only the last level is missing (the common case here)."""
    try:
        os.mkdir(path)
    except FileExistsError:
        pass
    except FileNotFoundError:
        os.makedirs(path, exist_ok=True)


def write_json(path: Path, doc: dict[str, Any]) -> None:
    """Write a ``zarr.json`` document (compact: the indenting encoder is pure Python and 10x slower)."""
    _makedirs(os.path.dirname(path))
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(json.dumps(doc, separators=(",", ":"), allow_nan=True))


def write_group(path: Path, attributes: dict[str, Any] | None = None) -> None:
    """Create (or overwrite the metadata of) a Zarr v3 group at ``path``."""
    write_json(Path(path) / "zarr.json", {"attributes": attributes or {}, "zarr_format": 3, "node_type": "group"})


def write_array(path: Path, data: NDArray[Any], chunks: tuple[int, ...],
                dimension_names: Sequence[str] | None = None) -> None:
    """Write ``data`` as a Zarr v3 array at ``path`` with regular ``chunks`` (clipped to the shape)."""
    path = Path(path)
    data = np.asarray(data)
    dtype = data.dtype.newbyteorder("<") if data.dtype.byteorder == ">" else data.dtype
    if dtype.hasobject or dtype.kind not in "biuf":
        raise TypeError(f"{path}: cannot store dtype {data.dtype} (numeric or bool only)")
    chunks = tuple(max(1, int(c)) for c in chunks)
    if len(chunks) != data.ndim:
        raise ValueError(f"{path}: chunks {chunks} do not match the array's {data.ndim} dimensions")
    write_json(path / "zarr.json", array_metadata(data.shape, chunks, dtype, dimension_names=dimension_names))
    if data.size == 0:
        return
    codec = _codec(dtype.itemsize)
    grid = [range(math.ceil(s / c)) for s, c in zip(data.shape, chunks, strict=True)]
    for index in itertools.product(*grid):
        sel = tuple(slice(i * c, min((i + 1) * c, s)) for i, c, s in zip(index, chunks, data.shape, strict=True))
        block = data[sel]
        if not block.any():
            continue  # all fill value: not stored (zarr's write_empty_chunks=False)
        if block.shape != chunks:
            padded = np.zeros(chunks, dtype=dtype)
            padded[tuple(slice(0, n) for n in block.shape)] = block
            block = padded
        raw = np.ascontiguousarray(block, dtype=dtype).view(np.uint8).reshape(-1)
        key = CHUNK_KEY_ENCODING["separator"].join(["c", *(str(i) for i in index)])
        with open(os.path.join(path, key), "wb") as fh:
            fh.write(codec.encode(raw))
