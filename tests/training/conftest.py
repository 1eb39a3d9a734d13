"""Fixtures: a tiny preprocessed phantom workspace (generator in phantom_data.py, next to this file)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch

from medseg.workspace import Workspace


def _load_phantom() -> ModuleType:
    """Import ``phantom_data`` by path (test modules then ``import phantom_data`` from sys.modules)."""
    name = "phantom_data"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).resolve().parent / "phantom_data.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


phantom = _load_phantom()


@pytest.fixture(autouse=True)
def _two_threads() -> None:
    torch.set_num_threads(2)


@pytest.fixture
def phantom_ws(tmp_path: Path) -> Workspace:
    """3 train + 1 val phantom cases (20, 48, 48) with a 4-level plan, patch (16, 32, 32)."""
    ws: Workspace = phantom.write_phantom_workspace(tmp_path / "ws")
    return ws
