"""The training stage: bundle + promotion, and a warm-started nightly run recorded in the stage stats."""

from __future__ import annotations

from pathlib import Path

import phantom_data
import torch

from medseg.config import MedsegConfig, ModelFamily
from medseg.stages.train import run_train_stage
from medseg.training.promotion import champion


def _cfg(root: Path, **train: object) -> MedsegConfig:
    phantom = phantom_data
    cfg: MedsegConfig = phantom.tiny_config(**train)
    return cfg.model_copy(update={"workspace": root})


def test_warm_started_stage_records_its_source(tmp_path: Path) -> None:
    torch.set_num_threads(2)
    ws = phantom_data.write_phantom_workspace(tmp_path / "ws")
    first = run_train_stage(_cfg(ws.root, max_epochs=1), ModelFamily.CNN)
    assert first.stats["promoted"] is True and first.stats["warm_started_from"] is None
    assert champion(ws, "cnn") is not None and champion(ws, "cnn").name == first.stats["version"]  # type: ignore[union-attr]

    nightly = run_train_stage(_cfg(ws.root, max_epochs=5, warm_start=True, warm_start_max_epochs=1), ModelFamily.CNN)
    assert not nightly.skipped
    assert nightly.stats["warm_started_from"] == first.stats["version"]
    assert nightly.stats["epochs"] == 1 and "warm start from" in nightly.stats["warm_start_reason"]
    assert nightly.stats["version"] != first.stats["version"]
