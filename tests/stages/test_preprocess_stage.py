"""medseg.stages.preprocess: the stage key over completed volume stores, and an empty workspace."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from medseg.config import MedsegConfig
from medseg.geometry import Geometry
from medseg.io.volume_store import CaseVolume, write_case
from medseg.stages.preprocess import NothingToPreprocessError, run_preprocess_stage, stores_key


def _store(folder: Path, case_id: str) -> Path:
    path = folder / f"{case_id}.zarr"
    write_case(path, CaseVolume(case_id, np.zeros((2, 4, 4), np.int16), Geometry.create((1, 1, 1), (0, 0, 0))))
    return path


def test_stores_key_counts_only_completed_stores(tmp_path: Path) -> None:
    empty = stores_key(tmp_path)
    _store(tmp_path, "a")
    one = stores_key(tmp_path)
    assert one != empty and one == stores_key(tmp_path)
    (tmp_path / "half.zarr").mkdir()  # an interrupted write is not a store yet
    assert stores_key(tmp_path) == one
    _store(tmp_path, "b")
    assert stores_key(tmp_path) != one


def test_a_workspace_without_volumes_is_a_clear_error(tmp_path: Path) -> None:
    cfg = MedsegConfig.model_validate({"workspace": str(tmp_path / "ws")})
    with pytest.raises(NothingToPreprocessError, match="run `medseg ingest` first"):
        run_preprocess_stage(cfg)
