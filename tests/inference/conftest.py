"""Inference fixtures; the phantom generator is shared with tests/training (loaded by path)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch


def _load_phantom() -> None:
    """Register ``tests/training/phantom_data.py`` as module ``phantom_data`` for the test modules."""
    name = "phantom_data"
    if name in sys.modules:
        return
    path = Path(__file__).resolve().parents[1] / "training" / "phantom_data.py"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)


_load_phantom()


@pytest.fixture(autouse=True)
def _two_threads() -> None:
    torch.set_num_threads(2)
