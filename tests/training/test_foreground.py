"""medseg.training.foreground: foreground voxel locations of a preprocessed case (stored or computed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from phantom_data import LABEL_NAMES, write_phantom_workspace

from medseg.geometry import Geometry
from medseg.io.volume_store import CaseVolume, write_case
from medseg.training.foreground import compute_locations, foreground_locations
from medseg.training.patches import load_cases


def test_foreground_locations_from_stored_arrays(tmp_path: Path) -> None:
    label = np.zeros((4, 8, 8), np.uint8)
    label[1, 2, 3] = 1
    fg = {"fg/1": np.array([[1, 2, 3]], np.int32), "fg/2": np.zeros((0, 3), np.int32)}
    path = tmp_path / "c.zarr"
    write_case(
        path,
        CaseVolume(
            "c",
            np.zeros(label.shape, np.float32),
            Geometry.create((1, 1, 1), (0, 0, 0)),
            labels={"gt": label},
            label_names=LABEL_NAMES,
            kind="preprocessed",
        ),
        extra_arrays=fg,
    )
    locs = foreground_locations(path)
    assert set(locs) == {1, 2}
    assert locs[1].tolist() == [[1, 2, 3]] and locs[2].shape == (0, 3)


def test_foreground_locations_from_source_attribute_and_fallback(tmp_path: Path) -> None:
    ws_attr = write_phantom_workspace(tmp_path / "a", n_train=1, n_val=0, store_fg=True)
    ws_none = write_phantom_workspace(tmp_path / "b", n_train=1, n_val=0, store_fg=False)
    from_attr = foreground_locations(ws_attr.preprocessed_case_path("case000"))
    computed = foreground_locations(ws_none.preprocessed_case_path("case000"))
    assert set(from_attr) == set(computed) == {1, 2}
    for c in (1, 2):
        # stored every 7th location; computed = all of them (below the cap)
        assert len(computed[c]) > len(from_attr[c]) > 0
        assert {tuple(p) for p in from_attr[c]} <= {tuple(p) for p in computed[c]}
    assert np.array_equal(computed[1], foreground_locations(ws_none.preprocessed_case_path("case000"))[1])


def test_foreground_locations_of_a_preprocess_stage_store(tmp_path: Path) -> None:
    case_mod = pytest.importorskip("medseg.preprocess.case")
    from phantom_data import make_plan, phantom_hu

    hu, label = phantom_hu((16, 64, 64), seed=2, spacing=(3.0, 1.2, 1.2))
    assert set(np.unique(label)) == {0, 1, 2}
    native = tmp_path / "native.zarr"
    write_case(
        native,
        CaseVolume(
            "n",
            hu.astype(np.int16),
            Geometry.create((3.0, 1.2, 1.2), (0, 0, 0)),
            labels={"gt": label},
            label_names=LABEL_NAMES,
        ),
    )
    out = tmp_path / "pre.zarr"
    case_mod.preprocess_case(native, out, make_plan())
    locs = foreground_locations(out)
    stored_label = np.asarray(load_cases({"n": out})[0].label)
    assert set(locs) == {1, 2}
    for c in (1, 2):
        assert len(locs[c]) > 0
        assert np.all(stored_label[tuple(locs[c].T)] == c)


def test_compute_locations_is_seeded_capped_and_lists_absent_classes() -> None:
    label = np.zeros((4, 10, 10), np.uint8)
    label[1:3, 2:8, 2:8] = 1
    locs = compute_locations(label, [1, 2], seed=5, max_per_class=20)
    assert locs[1].shape == (20, 3) and locs[2].shape == (0, 3)
    assert np.all(label[tuple(locs[1].T)] == 1)
    assert np.array_equal(locs[1], compute_locations(label, [1, 2], seed=5, max_per_class=20)[1])
    assert len(compute_locations(label, [1], seed=0)[1]) == int((label == 1).sum())  # below the cap: all
