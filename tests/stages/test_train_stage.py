"""The training stage: bundle + promotion, and a warm-started nightly run recorded in the stage stats."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import torch

from medseg.config import MedsegConfig, ModelFamily
from medseg.stages.train import run_train_stage
from medseg.training.promotion import champion


def _phantom() -> ModuleType:
    name = "phantom_data"
    if name not in sys.modules:
        path = Path(__file__).resolve().parents[1] / "training" / "phantom_data.py"
        spec = importlib.util.spec_from_file_location(name, path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def _cfg(root: Path, **train: object) -> MedsegConfig:
    phantom = _phantom()
    cfg: MedsegConfig = phantom.tiny_config(**train)
    return cfg.model_copy(update={"workspace": root})


def test_warm_started_stage_records_its_source(tmp_path: Path) -> None:
    torch.set_num_threads(2)
    ws = _phantom().write_phantom_workspace(tmp_path / "ws")
    first = run_train_stage(_cfg(ws.root, max_epochs=1), ModelFamily.CNN)
    assert first.stats["promoted"] is True and first.stats["warm_started_from"] is None
    assert champion(ws, "cnn") is not None and champion(ws, "cnn").name == first.stats["version"]  # type: ignore[union-attr]

    nightly = run_train_stage(_cfg(ws.root, max_epochs=5, warm_start=True, warm_start_max_epochs=1), ModelFamily.CNN)
    assert not nightly.skipped
    assert nightly.stats["warm_started_from"] == first.stats["version"]
    assert nightly.stats["epochs"] == 1 and "warm start from" in nightly.stats["warm_start_reason"]
    assert nightly.stats["version"] != first.stats["version"]
