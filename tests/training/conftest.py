"""Fixtures: a tiny preprocessed phantom workspace (generator in phantom_data.py, next to this file)."""

from __future__ import annotations

from pathlib import Path

import phantom_data as phantom  # registered by tests/conftest.py
import pytest
import torch

from medseg.workspace import Workspace


@pytest.fixture(autouse=True)
def _two_threads() -> None:
    torch.set_num_threads(2)


@pytest.fixture
def phantom_ws(tmp_path: Path) -> Workspace:
    """3 train + 1 val phantom cases (20, 48, 48) with a 4-level plan, patch (16, 32, 32)."""
    ws: Workspace = phantom.write_phantom_workspace(tmp_path / "ws")
    return ws
