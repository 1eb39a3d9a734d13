from pathlib import Path

import numpy as np
import pytest
import zarr

from medseg.geometry import Geometry
from medseg.io.volume_store import (
    CaseVolume,
    IncompleteStoreError,
    add_label,
    is_complete,
    open_array,
    read_case,
    read_meta,
    write_case,
)


def _case(seed: int = 0) -> CaseVolume:
    rng = np.random.default_rng(seed)
    image = rng.integers(-1000, 1000, size=(6, 20, 24)).astype(np.int16)
    label = (rng.random((6, 20, 24)) > 0.8).astype(np.uint8) * 2
    return CaseVolume("case_a", image, Geometry.create([3.0, 0.9, 0.9], [1, 2, 3]), labels={"gt": label},
                      label_names={1: "organ", 2: "lesion"}, source={"series_uid": "1.2.3"})


def test_round_trip_preserves_arrays_geometry_and_names(tmp_path: Path) -> None:
    case = _case()
    path = write_case(tmp_path / "case_a.zarr", case, chunks=(4, 8, 8))
    back = read_case(path)
    np.testing.assert_array_equal(back.image, case.image)
    assert back.image.dtype == np.int16
    np.testing.assert_array_equal(back.labels["gt"], case.labels["gt"])
    assert back.geometry == case.geometry
    assert back.label_names == {1: "organ", 2: "lesion"}
    assert back.source == {"series_uid": "1.2.3"}
    assert open_array(path, "labels/gt/0").chunks == (4, 8, 8)


def test_ome_metadata_is_readable_with_plain_zarr(tmp_path: Path) -> None:
    path = write_case(tmp_path / "c.zarr", _case())
    root = zarr.open_group(str(path), mode="r")
    ms = root.attrs["ome"]["multiscales"][0]
    assert [a["name"] for a in ms["axes"]] == ["z", "y", "x"]
    assert ms["datasets"][0]["coordinateTransformations"][0]["scale"] == [3.0, 0.9, 0.9]
    assert root["labels"].attrs["ome"]["labels"] == ["gt"]
    props = root["labels/gt"].attrs["ome"]["image-label"]["properties"]
    assert {p["label-value"] for p in props} == {1, 2}


def test_interrupted_write_is_invisible_and_previous_store_survives(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    path = write_case(tmp_path / "c.zarr", _case(0))
    import medseg.io.volume_store as vs

    def boom(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise OSError("disk full")

    monkeypatch.setattr(vs, "replace_dir", boom)
    with pytest.raises(OSError, match="disk full"):
        write_case(path, _case(1))
    assert is_complete(path)
    np.testing.assert_array_equal(read_case(path).image, _case(0).image)
    assert [p.name for p in tmp_path.iterdir()] == ["c.zarr"]  # no partial left behind


def test_store_without_marker_is_refused(tmp_path: Path) -> None:
    root = zarr.open_group(str(tmp_path / "half.zarr"), mode="w")
    root.attrs["medseg"] = {"complete": False}
    assert not is_complete(tmp_path / "half.zarr")
    with pytest.raises(IncompleteStoreError, match="not completed"):
        read_meta(tmp_path / "half.zarr")
    assert not is_complete(tmp_path / "missing.zarr")


def test_add_label_keeps_existing_labels(tmp_path: Path) -> None:
    path = write_case(tmp_path / "c.zarr", _case())
    pred = np.ones((6, 20, 24), np.uint8)
    add_label(path, "pred", pred, {1: "organ"})
    back = read_case(path)
    assert set(back.labels) == {"gt", "pred"}
    np.testing.assert_array_equal(back.labels["pred"], pred)


def test_label_shape_mismatch_is_rejected() -> None:
    with pytest.raises(ValueError, match="shape"):
        CaseVolume("x", np.zeros((2, 3, 4)), Geometry.create([1, 1, 1], [0, 0, 0]),
                   labels={"gt": np.zeros((1, 1, 1), np.uint8)})
