"""Real labeled MR (TCIA Brain-Tumor-Progression, 4 studies): DICOM -> ingest -> preprocess -> train.

The tumour mask series (Secondary Capture) are linked as labels of their T1post by ingest. The data
has 6.5 mm slices at ~0.5-0.9 mm pixels, so the automatic plan is 2D (nnU-Net's ``2d`` configuration).
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import pytest

from medseg.config import MedsegConfig
from medseg.ingest.run import ingest
from medseg.plan import Plan
from medseg.preprocess.run import run_preprocess
from medseg.splits import Splits
from medseg.training.train import train_model
from medseg.workspace import Workspace

pytestmark = pytest.mark.realdata  # ~15 s on 2 cores


def test_short_training_run_from_dicom(real_data: Path, tmp_path: Path) -> None:
    started = time.monotonic()
    cfg = MedsegConfig.model_validate(
        {
            "seed": 0,
            "ingest": {"deid_secret": "realdata-secret"},
            "preprocess": {"max_patch_voxels": 128 * 128},
            "split": {"test_fraction": 0.0, "val_fraction": 0.25},
            "train": {"filters": [8, 16, 32, 64, 96], "max_epochs": 2, "iterations_per_epoch": 3, "batch_size": 2,
                      "val_every": 2, "device": "cpu", "num_threads": 2, "models": ["cnn"]},
        }
    )
    ws = Workspace.at(tmp_path / "ws")
    summary = ingest([real_data / "tcia-brain-tumor-progression"], ws, cfg.ingest)
    assert summary.labeled_cases == 4
    pre = run_preprocess(ws, cfg, None)
    assert pre.failed == []
    plan = Plan.load(ws.plan_path)
    assert plan.modality == "MR" and plan.spatial_dims == 2 and plan.num_classes == 2
    splits = Splits.load(ws.splits_path)
    assert len(splits.train) == 3 and len(splits.val) == 1

    result = train_model(ws, cfg, "cnn")
    meta = json.loads((result.bundle_path / "metadata.json").read_text())
    assert (result.bundle_path / "model.pt").is_file() and (result.bundle_path / "curves.png").is_file()
    assert result.epochs == 2 and result.iterations == 6
    history = json.loads((result.bundle_path / "history.json").read_text())
    assert len(history) == 2 and all(math.isfinite(h["loss"]) for h in history)
    assert meta["training_data"]["train_cases"] == sorted(splits.train)
    assert result.val_mean_dice is not None and 0.0 <= result.val_mean_dice <= 1.0
    assert time.monotonic() - started < 300  # ~60-90 s on 2 idle cores
