"""Validation scores each case with and without largest-component postprocessing and picks the classes it helps."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import phantom_data as phantom
import pytest
import torch

from medseg.geometry import Geometry
from medseg.io.volume_store import CaseVolume, write_case
from medseg.plan import Plan
from medseg.training.network import build_segmenter
from medseg.training.validate import postprocess_classes, validate
from medseg.workspace import Workspace


class PositiveIsOrgan(torch.nn.Module):
    """Class 1 wherever the preprocessed intensity is positive, never class 2."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([torch.zeros_like(x), 20 * x, torch.full_like(x, -50.0)], dim=1)


def _store(path: Path, island_in_gt: bool) -> Path:
    image = np.full((20, 48, 48), -1.0, np.float32)
    gt = np.zeros(image.shape, np.uint8)
    image[6:14, 10:30, 10:30] = 1.0  # the organ
    gt[6:14, 10:30, 10:30] = 1
    image[2:4, 40:44, 40:44] = 1.0  # a far bright island
    if island_in_gt:
        gt[2:4, 40:44, 40:44] = 1
    case = CaseVolume(path.stem, image, Geometry.create((1.0, 1.0, 1.0), (0.0, 0.0, 0.0)), {"gt": gt}, {1: "organ"})
    return write_case(path, case)


def test_largest_component_is_chosen_only_where_it_raises_the_validation_dice(tmp_path: Path) -> None:
    plan = phantom.make_plan()
    names = dict(plan.label_names)
    false_island = validate(PositiveIsOrgan(), {"a": _store(tmp_path / "a.zarr", False)}, plan, torch.device("cpu"))
    assert false_island.largest_component is not None
    organ_before, organ_after = false_island.per_class["organ"], false_island.largest_component.per_class["organ"]
    assert organ_after == 1.0 and organ_before < 1.0  # the island was a false positive
    assert postprocess_classes(false_island.to_dict(), names) == [1]

    true_island = validate(PositiveIsOrgan(), {"b": _store(tmp_path / "b.zarr", True)}, plan, torch.device("cpu"))
    assert true_island.largest_component is not None
    assert true_island.per_class["organ"] == 1.0 > true_island.largest_component.per_class["organ"]
    assert postprocess_classes(true_island.to_dict(), names) == []  # removing it would hurt
    assert postprocess_classes({"mean_dice_per_class": {"organ": 0.5}}, names) == []  # older bundles: none


def test_a_long_validation_logs_its_progress(
    phantom_ws: Workspace, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    from medseg.training import validate as v

    monkeypatch.setattr(v, "LOG_EVERY_S", 0.0)  # every case counts as "long"
    plan = Plan.load(phantom_ws.plan_path)
    net = build_segmenter(plan, deep_supervision=False)
    paths = {c: phantom_ws.preprocessed_case_path(c) for c in ("case000", "case001")}
    with caplog.at_level(logging.INFO, logger="medseg.training.validate"):
        v.validate(net, paths, plan, torch.device("cpu"))
    lines = [r.getMessage() for r in caplog.records]
    assert [line.split(" in ")[0] for line in lines] == ["validation: 0/2 cases", "validation: 1/2 cases"]
