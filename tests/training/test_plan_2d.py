"""Strongly anisotropic data (6.5 mm slices, 0.8 mm pixels): the planner picks 2D on auto and training,
validation and the bundle follow the 2D plan."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from phantom_data import phantom_hu

from medseg.config import MedsegConfig, PreprocessConfig
from medseg.geometry import Geometry
from medseg.io.volume_store import CaseVolume, write_case
from medseg.plan import Plan
from medseg.preprocess.planner import AUTO_2D_RATIO, choose_spatial_dims
from medseg.preprocess.run import run_preprocess
from medseg.training.bundle import load_bundle
from medseg.training.train import train_model
from medseg.workspace import Workspace

THICK = (6.5, 0.8, 0.8)


def test_choose_spatial_dims_rule() -> None:
    assert choose_spatial_dims(THICK)[0] == 2
    assert choose_spatial_dims((5.0, 0.795, 0.795))[0] == 3  # spleen CT: 6.3x, stays 3D
    assert choose_spatial_dims((3.0, 1.2, 1.2))[0] == 3
    assert choose_spatial_dims((0.8 * AUTO_2D_RATIO, 0.8, 0.8))[0] == 2
    assert choose_spatial_dims((1.0, 8.0, 0.5))[0] == 3  # coarse axis is not the slice axis
    assert PreprocessConfig().spatial_dims is None  # auto by default


def _write_native(ws: Workspace, n: int) -> None:
    for i in range(n):
        hu, label = phantom_hu((12, 80, 80), seed=10 + i, spacing=THICK)
        write_case(
            ws.volume_path(f"thick{i}"),
            CaseVolume(
                case_id=f"thick{i}",
                image=hu.astype(np.int16),
                geometry=Geometry.create(THICK, (0.0, 0.0, 0.0)),
                labels={"gt": label},
                label_names={1: "organ", 2: "lesion"},
                source={"modality": "MR"},
            ),
        )


@pytest.mark.parametrize("forced", [None, 3])
def test_auto_plans_2d_and_training_follows(tmp_path: Path, forced: int | None) -> None:
    ws = Workspace.at(tmp_path / "ws").ensure()
    _write_native(ws, 3)
    cfg = MedsegConfig.model_validate(
        {
            "preprocess": {"spatial_dims": forced},
            "split": {"test_fraction": 0.0, "val_fraction": 0.34},
            "train": {"filters": [4, 8, 16, 32], "max_epochs": 1, "iterations_per_epoch": 2, "batch_size": 2,
                      "device": "cpu", "num_threads": 2, "models": ["cnn"]},
        }
    )
    run_preprocess(ws, cfg, None)
    plan = Plan.load(ws.plan_path)
    if forced == 3:  # an explicit choice wins over the rule
        assert plan.spatial_dims == 3 and plan.patch_size[0] > 1
        return
    assert plan.spatial_dims == 2 and plan.patch_size[0] == 1
    assert all(s[0] == 1 for s in plan.strides)
    result = train_model(ws, cfg, "cnn")
    meta = json.loads((result.bundle_path / "metadata.json").read_text())
    assert meta["input_contract"]["spatial_dims"] == 2
    assert result.val_mean_dice is not None and 0.0 <= result.val_mean_dice <= 1.0
    bundle = load_bundle(result.bundle_path)
    convs = [m for m in bundle.network.modules() if isinstance(m, torch.nn.modules.conv._ConvNd)]
    assert convs and all(isinstance(m, torch.nn.Conv2d | torch.nn.ConvTranspose2d) for m in convs)
