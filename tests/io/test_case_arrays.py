"""Named arrays of a case store: image, labels and foreground locations (one writer, one reader, one key)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from medseg.geometry import Geometry
from medseg.io.case_arrays import (
    FOREGROUND_SOURCE_KEY,
    GT_LABEL,
    label_array_name,
    label_volume_names,
    open_image,
    open_label,
    read_foreground_locations,
    slabs,
    write_foreground_locations,
)
from medseg.io.volume_store import CaseVolume, case_writer, write_case

GEO = Geometry.create((1.0, 1.0, 1.0), (0.0, 0.0, 0.0))


def _write(path: Path, source: dict[str, object] | None = None) -> tuple[np.ndarray, np.ndarray]:
    label = np.zeros((4, 6, 6), np.uint8)
    label[1, 2, 3] = 1
    image = np.arange(label.size, dtype=np.float32).reshape(label.shape)
    write_case(path, CaseVolume("c", image, GEO, labels={GT_LABEL: label}, label_names={1: "a"},
                                source=source or {}), chunks=(2, 6, 6))
    return image, label



def test_image_and_gt_label_by_name(tmp_path: Path) -> None:
    image, label = _write(tmp_path / "c.zarr")
    assert label_array_name() == "labels/gt/0" and label_array_name("pred") == "labels/pred/0"
    assert label_volume_names(tmp_path / "c.zarr") == [GT_LABEL]
    np.testing.assert_array_equal(open_image(tmp_path / "c.zarr")[...], image)
    np.testing.assert_array_equal(open_label(tmp_path / "c.zarr")[...], label)
    assert slabs(open_image(tmp_path / "c.zarr")) == [(0, 2), (2, 4)]


def test_foreground_locations_round_trip(tmp_path: Path) -> None:
    fg = {1: np.array([[1, 2, 3]], np.int32), 2: np.zeros((0, 3), np.int32)}
    with case_writer(tmp_path / "p.zarr", "p", (4, 6, 6), np.float32, GEO, labels=[GT_LABEL]) as writer:
        write_foreground_locations(writer, fg)
    back = read_foreground_locations(tmp_path / "p.zarr")
    assert back is not None and set(back) == {1, 2}
    assert back[1].dtype == np.int32 and back[1].tolist() == [[1, 2, 3]] and back[2].shape == (0, 3)


def test_source_attribute_form_and_none(tmp_path: Path) -> None:
    _write(tmp_path / "a.zarr", {FOREGROUND_SOURCE_KEY: {"1": [[1, 2, 3]]}})
    back = read_foreground_locations(tmp_path / "a.zarr")
    assert back is not None and back[1].tolist() == [[1, 2, 3]] and back[1].dtype == np.int64
    _write(tmp_path / "n.zarr")
    assert read_foreground_locations(tmp_path / "n.zarr") is None
    _write(tmp_path / "bad.zarr", {FOREGROUND_SOURCE_KEY: {"1": [[1, 2]]}})
    with pytest.raises(ValueError, match=r"\(N, 3\)"):
        read_foreground_locations(tmp_path / "bad.zarr")
