from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import phantom_data as phantom
import pytest
import torch

from medseg.config import InferConfig, MedsegConfig
from medseg.geometry import Geometry
from medseg.inference.predict import predict_volume, run_inference
from medseg.io.volume_store import CaseVolume, read_case, read_meta, write_case
from medseg.training.bundle import ModelBundle, promote, save_bundle
from medseg.training.network import build_segmenter
from medseg.workspace import Workspace

NATIVE_SPACING = (3.0, 1.2, 1.0)
GEOMETRY = Geometry.create(NATIVE_SPACING, (-30.0, 12.5, 100.0))


class BrightIsOrgan(torch.nn.Module):
    """Oracle: class 1 where the normalised intensity is > 0 (i.e. HU > 80), else background."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([torch.zeros_like(x), 20 * x, torch.full_like(x, -50.0)], dim=1)


def _native_case(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    hu, label = phantom.phantom_hu((24, 60, 70), seed, NATIVE_SPACING)
    return np.round(hu).astype(np.int16), label


def test_predict_volume_returns_labels_on_the_native_grid() -> None:
    image, gt = _native_case()
    plan = phantom.make_plan()
    bundle = ModelBundle(path=Path("."), family="cnn", version="v", plan=plan, network=BrightIsOrgan(), metadata={})
    label = predict_volume(bundle, image, GEOMETRY, InferConfig(), "cpu")
    assert label.shape == image.shape and label.dtype == np.uint8
    assert set(np.unique(label)) <= {0, 1}
    # the whole-volume reference (nnU-Net's way, in RAM): MONAI sliding window -> full logits ->
    # linear resampling of every class to the native grid -> argmax
    from medseg.inference.sliding import predict_logits
    from medseg.preprocess.case import preprocess_image, restore_probabilities_to_native

    pre = preprocess_image(image, GEOMETRY, plan)
    x = torch.from_numpy(pre.data)[None, None]
    logits = predict_logits(bundle.network, x, plan, InferConfig(), torch.device("cpu"))[0].numpy()
    ref = restore_probabilities_to_native(logits, pre).argmax(axis=0)
    assert (label != ref).mean() < 1e-4
    # ... which is the organ (120 HU, without its hypodense lesions) up to resampling at the edges
    truth = gt == 1
    dice = 2 * np.logical_and(label == 1, truth).sum() / ((label == 1).sum() + truth.sum())
    assert dice > 0.8, dice


def test_predict_volume_spills_large_preprocessed_images_to_disk(tmp_path: Path) -> None:
    image, _ = _native_case()
    plan = phantom.make_plan()
    bundle = ModelBundle(path=Path("."), family="cnn", version="v", plan=plan, network=BrightIsOrgan(), metadata={})
    in_ram = predict_volume(bundle, image, GEOMETRY, InferConfig(), "cpu")
    spilled = predict_volume(bundle, image, GEOMETRY, InferConfig(spill_mib=0), "cpu", spill_dir=tmp_path)
    np.testing.assert_array_equal(spilled, in_ram)
    assert not any(tmp_path.iterdir())  # the temporary on-disk image is gone


def test_predict_volume_keeps_the_largest_component() -> None:
    image, _ = _native_case()
    image[2:4, 5:9, 5:9] = 300  # a small bright island far from the organ
    plan = phantom.make_plan()
    bundle = ModelBundle(path=Path("."), family="cnn", version="v", plan=plan, network=BrightIsOrgan(), metadata={})
    raw = predict_volume(bundle, image, GEOMETRY, InferConfig(keep_largest_component=False), "cpu")
    kept = predict_volume(bundle, image, GEOMETRY, InferConfig(keep_largest_component=True), "cpu")
    assert raw[2:4, 5:9, 5:9].any() and not kept[2:4, 5:9, 5:9].any()
    # auto: what the bundle's validation chose (nothing for a bundle without the choice)
    np.testing.assert_array_equal(predict_volume(bundle, image, GEOMETRY, InferConfig(), "cpu"), raw)
    bundle.metadata = {"postprocessing": {"keep_largest_component": [1]}}
    np.testing.assert_array_equal(predict_volume(bundle, image, GEOMETRY, InferConfig(), "cpu"), kept)
    from scipy import ndimage

    assert ndimage.label(kept == 1, structure=np.ones((3, 3, 3)))[1] == 1
    assert np.array_equal(kept == 1, (raw == 1) & (kept == 1)) and (kept == 1).sum() > 0.9 * (raw == 1).sum()


def _workspace(tmp_path: Path) -> tuple[Workspace, Path]:
    ws = phantom.write_phantom_workspace(tmp_path / "ws", n_train=1, n_val=1)
    for i in range(2):
        image, label = _native_case(i)
        write_case(
            ws.volume_path(f"case{i:03d}"),
            CaseVolume(f"case{i:03d}", image, GEOMETRY, {"gt": label}, dict(phantom.LABEL_NAMES)),
        )
    plan = phantom.make_plan()
    torch.manual_seed(0)
    net = build_segmenter(plan, deep_supervision=False)
    bundle = save_bundle(
        ws,
        "cnn",
        plan,
        net.state_dict(),
        deep_supervision=False,
        validation={"mean_dice": 0.5, "dice_per_case": {"case001": {"organ": 0.5, "lesion": 0.5}}},
        training={},
        train_cases=["case000"],
        val_cases=["case001"],
        history=[],
    )
    return ws, bundle


def test_run_inference_writes_zarr_and_nifti_and_skips_done_cases(tmp_path: Path) -> None:
    ws, bundle = _workspace(tmp_path)
    cfg = MedsegConfig.model_validate({"train": {"device": "cpu"}, "infer": {"overlap": 0.25}})
    with pytest.raises(FileNotFoundError, match="no champion"):
        run_inference(ws, cfg, "cnn", ["case000"])
    assert promote(ws, "cnn", bundle)
    events: list[dict[str, object]] = []
    summary = run_inference(ws, cfg, "cnn", ["case000", "case001", "missing"], progress=events.append)
    assert summary.version == bundle.name and summary.predicted == ["case000", "case001"]
    assert set(summary.failed) == {"missing"} and [e["status"] for e in events][-1] == "failed"
    out = ws.prediction_dir("cnn", bundle.name)
    native = read_case(ws.volume_path("case000"))
    pred = read_case(out / "case000.zarr")
    assert pred.labels["pred"].shape == native.image.shape and pred.geometry == native.geometry
    assert read_meta(out / "case000.zarr")["source"]["model_version"] == bundle.name
    nii = nib.load(str(out / "case000.nii.gz"))
    assert isinstance(nii, nib.Nifti1Image) and nii.affine is not None
    np.testing.assert_allclose(np.asarray(nii.affine, float), GEOMETRY.nifti_affine(), atol=1e-4)
    np.testing.assert_array_equal(np.asarray(nii.dataobj).transpose(2, 1, 0), pred.labels["pred"])
    again = run_inference(ws, cfg, "cnn", ["case000", "case001"], bundle_path=bundle)
    assert again.skipped == ["case000", "case001"] and again.predicted == []


def test_run_inference_with_an_ensemble_champion_uses_every_fold_model(tmp_path: Path) -> None:
    from medseg.training.bundle import FoldModel, load_bundle, save_ensemble_bundle

    ws, _ = _workspace(tmp_path)
    plan = phantom.make_plan()
    members = []
    for i in range(2):
        torch.manual_seed(10 + i)
        members.append(FoldModel(
            state_dict=build_segmenter(plan, deep_supervision=False).state_dict(), history=[],
            train_cases=[f"case00{1 - i}"], val_cases=[f"case00{i}"],
            validation={"dice_per_case": {f"case00{i}": {"organ": 0.5, "lesion": 0.5}}}, training={},
        ))
    validation = {"mean_dice": 0.5, "dice_per_case": {c: {"organ": 0.5, "lesion": 0.5} for c in ("case000", "case001")}}
    path = save_ensemble_bundle(ws, "cnn", plan, members, deep_supervision=False, validation=validation,
                                training={}, cv_metrics={"folds": 2, "per_fold": [], "pooled": validation})
    assert promote(ws, "cnn", path)
    cfg = MedsegConfig.model_validate({"train": {"device": "cpu"}, "infer": {"overlap": 0.25, "dicom_seg": False}})
    summary = run_inference(ws, cfg, "cnn", ["case000"])
    assert summary.version == path.name and summary.predicted == ["case000"]
    pred = read_case(ws.prediction_dir("cnn", path.name) / "case000.zarr").labels["pred"]
    bundle = load_bundle(path)
    assert bundle.is_ensemble
    image = read_case(ws.volume_path("case000")).image
    np.testing.assert_array_equal(pred, predict_volume(bundle, image, GEOMETRY, cfg.infer, "cpu"))
