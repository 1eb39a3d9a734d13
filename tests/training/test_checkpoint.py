"""medseg.training.checkpoint: atomic save/load with RNG states, clear errors on bad files."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch

from medseg.training.checkpoint import CHECKPOINT_FORMAT, capture_rng, load_checkpoint, restore_rng, save_checkpoint


def test_rng_capture_and_restore_replays_the_same_draws() -> None:
    state = capture_rng()
    first = (random.random(), float(np.random.rand()), float(torch.rand(1)))
    restore_rng(state)
    assert (random.random(), float(np.random.rand()), float(torch.rand(1))) == first


def test_checkpoint_round_trip_and_errors(tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path / "run" / "last.pt", {"epoch": 3, "weights": {"w": torch.arange(4.0)}})
    data = load_checkpoint(path)
    assert data["epoch"] == 3 and data["format"] == CHECKPOINT_FORMAT and "rng" in data
    assert torch.equal(data["weights"]["w"], torch.arange(4.0))
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "missing.pt")
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(path.read_bytes()[:40])
    with pytest.raises(ValueError, match="unreadable"):
        load_checkpoint(corrupt)
    other = tmp_path / "other.pt"
    torch.save({"format": CHECKPOINT_FORMAT + 1}, other)
    with pytest.raises(ValueError, match="not a medseg checkpoint"):
        load_checkpoint(other)
