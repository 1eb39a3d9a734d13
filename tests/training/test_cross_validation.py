"""medseg.training.cross_validation: train.folds = k trains k fold models into one ensemble bundle.

The phantom workspace holds 7 cases: 5 train + 1 val (the 6 non-test cases the folds split) and 1 test
case that no fold may see.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from phantom_data import SPACING, phantom_hu, tiny_config, write_phantom_workspace

from medseg.config import InferConfig
from medseg.geometry import Geometry
from medseg.inference.ensemble import probabilities_volume, softmax
from medseg.inference.predict import predict_volume
from medseg.inference.restore import NativeRestorer
from medseg.inference.stream import logits_volume
from medseg.io.case_arrays import open_image
from medseg.preprocess.case import case_layout, preprocess_image_into
from medseg.splits import Splits
from medseg.training import losses
from medseg.training.bundle import load_bundle
from medseg.training.cross_validation import fold_time_cap
from medseg.training.loop import TrainingDivergedError
from medseg.training.train import TrainResult, train_model
from medseg.workspace import Workspace

NON_TEST = [f"case{i:03d}" for i in range(6)]
TEST_CASE = "case006"


def _cv_workspace(root: Path) -> Workspace:
    ws = write_phantom_workspace(root, n_train=6, n_val=1)
    Splits(train=NON_TEST[:5], val=[NON_TEST[5]], test=[TEST_CASE]).save(ws.splits_path)
    return ws


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Workspace, TrainResult, list[dict[str, Any]]]:
    """One 3-fold run (1 epoch of 2 iterations per fold), shared by the tests of this module."""
    torch.set_num_threads(2)
    ws = _cv_workspace(tmp_path_factory.mktemp("cv") / "ws")
    events: list[dict[str, Any]] = []
    result = train_model(ws, tiny_config(folds=3), "cnn", progress=events.append)
    return ws, result, events


def test_three_folds_give_one_ensemble_bundle_with_three_models(trained: tuple[Workspace, TrainResult, Any]) -> None:
    ws, result, _ = trained
    b = result.bundle_path
    assert result.folds == 3 and b.parent == ws.model_family_dir("cnn")
    for i in range(3):
        for name in ("model.pt", "history.json", "curves.png", "checkpoints/best.pt", "checkpoints/last.pt"):
            assert (b / f"fold_{i}" / name).is_file(), f"fold_{i}/{name}"
    assert not (b / "model.pt").exists() and (b / "curves.png").is_file()
    meta = json.loads((b / "metadata.json").read_text())
    assert meta["schema_version"] == 2 and meta["kind"] == "ensemble"
    assert meta["ensemble"] == {"folds": 3, "members": ["fold_0", "fold_1", "fold_2"], "combine": "mean_softmax"}
    assert set(meta["files"]) == {f"fold_{i}/model.pt" for i in range(3)}
    assert meta["training"]["iterations"] == 6 and meta["training"]["planned_iterations"] == 6
    assert meta["training"]["stopped_reason"] == "iteration_budget" and len(meta["training"]["per_fold"]) == 3
    assert [f["training"]["seed"] for f in meta["folds"]] == [0, 1, 2]
    assert not (ws.model_family_dir("cnn") / ".runs").exists()


def test_cv_metrics_list_folds_and_pooled_out_of_fold_cases(trained: tuple[Workspace, TrainResult, Any]) -> None:
    _, result, _ = trained
    assert result.cv_metrics_path is not None
    cv = json.loads(result.cv_metrics_path.read_text())
    assert cv["schema_version"] == 1 and cv["folds"] == 3 and len(cv["per_fold"]) == 3
    held_out: list[str] = []
    for i, fold in enumerate(cv["per_fold"]):
        assert fold["fold"] == i and fold["val_cases"] and not set(fold["train_cases"]) & set(fold["val_cases"])
        assert sorted(fold["train_cases"] + fold["val_cases"]) == NON_TEST  # the test case is in no fold
        assert set(fold["dice_per_case"]) == set(fold["val_cases"])
        assert set(fold["mean_dice_per_class"]) == {"organ", "lesion"}
        held_out += fold["val_cases"]
    assert sorted(held_out) == NON_TEST  # the out-of-fold cases partition the training cases
    pooled = cv["pooled"]
    assert pooled["cases"] == NON_TEST and set(pooled["dice_per_case"]) == set(NON_TEST)
    for name in ("organ", "lesion"):
        values = [d[name] for d in pooled["dice_per_case"].values() if d[name] is not None]
        assert pooled["mean_dice_per_class"][name] == pytest.approx(np.mean(values))
        for fold in cv["per_fold"]:  # each case's pooled Dice is its own fold's
            for case, d in fold["dice_per_case"].items():
                assert pooled["dice_per_case"][case][name] == d[name]
    assert result.val_mean_dice == pytest.approx(pooled["mean_dice"])
    meta = json.loads((result.bundle_path / "metadata.json").read_text())
    assert meta["validation"]["dice_per_case"] == pooled["dice_per_case"]  # promotion compares on these


def test_progress_events_name_the_fold_and_count_over_all_folds(trained: tuple[Workspace, TrainResult, Any]) -> None:
    _, _, events = trained
    epochs = [e for e in events if e["event"] == "epoch"]
    assert [(e["fold"], e["folds"]) for e in epochs] == [(0, 3), (1, 3), (2, 3)]
    assert [e["global_iteration"] for e in epochs] == [2, 4, 6] and {e["total_iterations"] for e in epochs} == {6}


def test_ensemble_bundle_loads_every_fold_model(trained: tuple[Workspace, TrainResult, Any]) -> None:
    _, result, _ = trained
    bundle = load_bundle(result.bundle_path)
    assert bundle.is_ensemble and len(bundle.networks) == 3 and bundle.network is bundle.networks[0]
    for i, net in enumerate(bundle.networks):
        stored = torch.load(result.bundle_path / f"fold_{i}" / "model.pt", weights_only=True)
        assert all(torch.equal(v, stored[k]) for k, v in net.state_dict().items())
        assert not net.training
    a, b = (dict(n.state_dict()) for n in bundle.networks[:2])
    assert any(not torch.equal(a[k], b[k]) for k in a)  # different folds, different models


def test_ensemble_inference_is_the_mean_of_the_fold_models_softmax(
    trained: tuple[Workspace, TrainResult, Any],
) -> None:
    ws, result, _ = trained
    bundle = load_bundle(result.bundle_path)
    cfg = InferConfig(overlap=0.25, sw_batch_size=2, mirror_tta=False, precision="fp32", keep_largest_component=False)
    image = np.asarray(open_image(ws.preprocessed_case_path(TEST_CASE))[...], dtype=np.float32)
    alone = [softmax(logits_volume(net, image, bundle.plan, cfg)) for net in bundle.networks]
    expected = np.mean(alone, axis=0)
    mean = probabilities_volume(bundle.networks, image, bundle.plan, cfg)
    np.testing.assert_allclose(mean, expected, rtol=0, atol=1e-6)
    np.testing.assert_allclose(mean.sum(axis=0), 1.0, atol=1e-5)
    # end to end on a native volume: predict_volume takes the argmax of that mean on the native grid
    hu, _ = phantom_hu((20, 48, 48), seed=99)
    geometry = Geometry.create(SPACING, (0.0, 0.0, 0.0))
    label = predict_volume(bundle, hu, geometry, cfg)
    layout = case_layout(hu, geometry, bundle.plan)
    pre = np.zeros(layout.new_shape, dtype=np.float32)
    preprocess_image_into(hu, layout, bundle.plan, pre)
    probs = np.mean([softmax(logits_volume(net, pre, bundle.plan, cfg)) for net in bundle.networks], axis=0)
    manual = np.zeros(hu.shape, dtype=np.uint8)
    restorer = NativeRestorer(layout.new_shape, layout.crop_bbox, manual, layout.anisotropic_axis)
    restorer.feed(0, probs.astype(np.float32))
    np.testing.assert_array_equal(label, manual)


def test_fold_time_cap_shares_what_is_left_among_the_folds_left() -> None:
    assert fold_time_cap(None, 0.0, 3) is None
    assert fold_time_cap(9.0, 0.0, 3) == pytest.approx(3.0)
    assert fold_time_cap(9.0, 60.0, 2) == pytest.approx(4.0)  # fold 0 used 1 of its 3 minutes
    assert fold_time_cap(9.0, 600.0, 1) == pytest.approx(1e-6)  # spent: the next check stops the fold


def test_time_cap_covers_the_whole_run(tmp_path: Path) -> None:
    ws = _cv_workspace(tmp_path / "ws")
    result = train_model(ws, tiny_config(folds=3, max_epochs=50, max_minutes=0.003), "cnn")
    assert result.stopped_reason == "time_cap" and result.time_capped
    assert result.iterations < result.planned_iterations == 300
    meta = json.loads((result.bundle_path / "metadata.json").read_text())
    assert meta["training"]["time_capped"] is True and meta["training"]["max_minutes"] == 0.003
    per_fold = meta["training"]["per_fold"]
    assert per_fold[0]["config"]["max_minutes"] == pytest.approx(0.001)  # fold 0: a third of the run's cap
    for i, t in enumerate(per_fold):  # then: what earlier folds left, shared by the folds left
        spent = sum(p["seconds"] for p in per_fold[:i])
        assert t["config"]["max_minutes"] == pytest.approx(fold_time_cap(0.003, spent, 3 - i))
    assert any(w.startswith("fold ") and "stopped by the time cap" in w for w in result.warnings)


def test_too_few_cases_for_the_folds_is_a_clear_error(phantom_ws: Workspace) -> None:
    with pytest.raises(ValueError, match=r"train.folds=5 needs at least 5 non-test cases, the split has 4"):
        train_model(phantom_ws, tiny_config(folds=5), "cnn")


def test_each_fold_is_bit_identical_after_an_interrupted_run_resumes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fold i is seeded with seed + i and resumes from its own run folder: a run that dies in fold 1 and
    is started again ships the weights of an uninterrupted run, fold by fold."""
    cfg = tiny_config(folds=2, max_epochs=2, val_every=2)
    full = train_model(write_phantom_workspace(tmp_path / "a"), cfg, "cnn")
    ws_b = write_phantom_workspace(tmp_path / "b")
    original = losses.SegmentationLoss.forward
    calls = {"n": 0}

    def forward(self: losses.SegmentationLoss, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        calls["n"] += 1
        out = original(self, pred, target)
        return out * float("nan") if calls["n"] > 6 else out  # fold 0 (4 iterations) + 2 of fold 1

    with monkeypatch.context() as m:
        m.setattr(losses.SegmentationLoss, "forward", forward)
        with pytest.raises(TrainingDivergedError):
            train_model(ws_b, cfg, "cnn")
    resumed = train_model(ws_b, cfg, "cnn")
    for i in range(2):
        a = torch.load(full.bundle_path / f"fold_{i}" / "model.pt", weights_only=True)
        b = torch.load(resumed.bundle_path / f"fold_{i}" / "model.pt", weights_only=True)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), f"fold {i} differs"
    per_fold = json.loads((resumed.bundle_path / "metadata.json").read_text())["training"]["per_fold"]
    assert per_fold[1]["resumed_from_epoch"] == 1
