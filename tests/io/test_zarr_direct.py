"""The direct Zarr v3 writer produces the same stores as zarr-python (metadata, chunk bytes, read-back)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import zarr
from zarr.codecs import BloscCodec

from medseg.io.zarr_direct import (
    BLOSC_CLEVEL,
    BLOSC_CNAME,
    BLOSC_SHUFFLE,
    CHUNK_KEY_ENCODING,
    write_array,
    write_group,
)


def _dimension_names(data: np.ndarray) -> tuple[str, ...] | None:
    """Image-like arrays name their axes (OME-Zarr 0.5), the 2-D extra arrays do not."""
    return ("z", "y", "x") if data.ndim == 3 else None


def _zarr_reference(path: Path, data: np.ndarray, chunks: tuple[int, ...]) -> None:
    arr = zarr.create_array(str(path), shape=data.shape, chunks=chunks, dtype=data.dtype,
                            compressors=[BloscCodec(cname=BLOSC_CNAME, clevel=BLOSC_CLEVEL, shuffle=BLOSC_SHUFFLE)],
                            chunk_key_encoding=dict(CHUNK_KEY_ENCODING), fill_value=0, zarr_format=3,
                            dimension_names=_dimension_names(data))
    arr[...] = data


def _chunk_files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.name != "zarr.json"}


@pytest.mark.parametrize(
    ("dtype", "shape", "chunks"),
    [
        (np.int16, (26, 40, 33), (26, 40, 33)),  # one chunk
        (np.int16, (70, 50, 45), (32, 32, 32)),  # edge chunks padded
        (np.float32, (9, 17, 20), (4, 8, 8)),
        (np.uint8, (12, 30, 30), (5, 16, 16)),  # labels with empty chunks
        (np.int64, (5, 3), (5, 3)),  # 2-D extra array (foreground coordinates)
        (np.uint16, (3, 4, 5), (2, 2, 2)),
    ],
)
def test_direct_writer_matches_zarr_python(tmp_path: Path, dtype: type, shape: tuple[int, ...],
                                           chunks: tuple[int, ...]) -> None:
    rng = np.random.default_rng(0)
    data = (rng.normal(0, 300, shape)).astype(dtype)
    if dtype is np.uint8:
        data = np.zeros(shape, np.uint8)
        data[2:4, 3:9, 20:26] = 2  # only a few chunks are non-empty
    _zarr_reference(tmp_path / "ref", data, chunks)
    write_array(tmp_path / "direct", data, chunks, _dimension_names(data))

    ref_meta = json.loads((tmp_path / "ref" / "zarr.json").read_text())
    assert json.loads((tmp_path / "direct" / "zarr.json").read_text()) == ref_meta
    ref_chunks = _chunk_files(tmp_path / "ref")
    direct_chunks = _chunk_files(tmp_path / "direct")
    assert sorted(direct_chunks) == sorted(ref_chunks)  # same chunks written, empty ones skipped alike
    back = zarr.open_array(str(tmp_path / "direct"), mode="r")[...]
    np.testing.assert_array_equal(back, data)
    assert direct_chunks == ref_chunks  # same codec and settings: byte-identical chunks


def test_big_endian_input_is_stored_little_endian(tmp_path: Path) -> None:
    data = np.arange(60, dtype=">i2").reshape(3, 4, 5)
    write_array(tmp_path / "a", data, (3, 4, 5))
    back = zarr.open_array(str(tmp_path / "a"), mode="r")[...]
    np.testing.assert_array_equal(back, data.astype("<i2"))


def test_group_attributes_read_by_zarr(tmp_path: Path) -> None:
    write_group(tmp_path / "g", {"medseg": {"complete": True, "nested": [1, 2]}})
    write_array(tmp_path / "g" / "0", np.ones((2, 2, 2), np.int16), (2, 2, 2))
    group = zarr.open_group(str(tmp_path / "g"), mode="r")
    assert dict(group.attrs)["medseg"] == {"complete": True, "nested": [1, 2]}
    assert isinstance(group["0"], zarr.Array)


def test_unsupported_dtype_is_refused_with_the_path(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="cannot store dtype"):
        write_array(tmp_path / "s", np.array([["a"]], dtype=object), (1, 1))
