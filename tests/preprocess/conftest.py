"""Fixtures: a tmp workspace, a small config and a factory of synthetic ingested cases."""

from __future__ import annotations

from pathlib import Path

import pytest
from preprocess_synthetic import MakeCase, synthetic_case

from medseg.config import MedsegConfig
from medseg.io.volume_store import write_case
from medseg.workspace import Workspace


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    return Workspace.at(tmp_path / "ws").ensure()


@pytest.fixture
def cfg(tmp_path: Path) -> MedsegConfig:
    c = MedsegConfig(workspace=tmp_path / "ws")
    c.preprocess.max_patch_voxels = 16 * 32 * 32
    c.train.filters = [8, 16, 32, 64]
    return c


@pytest.fixture
def make_case(ws: Workspace) -> MakeCase:
    def _make(case_id: str, **kwargs: object) -> Path:
        return write_case(ws.volume_path(case_id), synthetic_case(case_id, **kwargs))  # type: ignore[arg-type]

    return _make
