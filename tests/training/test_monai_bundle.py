"""MONAI bundle export (``medseg.training.monai_bundle``): the exported bundle, run by ``monai.bundle``
itself on a NIfTI image, predicts what medseg's ``predict_volume`` predicts on the same image."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import phantom_data as phantom
import pytest
import torch
from monai.networks.nets import DynUNet

from medseg.config import InferConfig
from medseg.geometry import Geometry
from medseg.inference.predict import predict_volume
from medseg.io.nifti import read_nifti, write_nifti
from medseg.training.bundle import load_bundle, save_bundle
from medseg.training.monai_bundle import (
    UnsupportedExport,
    export_monai_bundle,
    monai_network_kwargs,
    transposed_state_dict,
)
from medseg.training.network import build_segmenter
from medseg.workspace import Workspace

NATIVE_SPACING = (3.0, 1.3, 1.1)
FP32 = InferConfig(precision="fp32")


def _trained_network(plan: Any, steps: int = 60) -> torch.nn.Module:
    """The phantom plan's DynUNet after a few Adam steps on phantom patches (enough to segment the organ)."""
    torch.manual_seed(0)
    net = build_segmenter(plan, deep_supervision=True)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    rng = np.random.default_rng(0)
    volumes = [phantom.phantom_hu((20, 48, 48), seed) for seed in range(3)]
    pz, py, px = plan.patch_size  # (1, y, x) for a 2D plan: one slice, squeezed below
    net.train()
    for _ in range(steps):
        xs, ys = [], []
        for _ in range(2):
            hu, label = volumes[int(rng.integers(len(volumes)))]
            z, y, x = (int(rng.integers(0, s - p + 1)) for s, p in zip(hu.shape, (pz, py, px), strict=True))
            xs.append(phantom.normalise(hu[z:z + pz, y:y + py, x:x + px]))
            ys.append(label[z:z + pz, y:y + py, x:x + px])
        images, labels = torch.from_numpy(np.stack(xs))[:, None], torch.from_numpy(np.stack(ys)).long()
        if plan.spatial_dims == 2:
            images, labels = images[:, :, 0], labels[:, 0]
        out = net(images)[:, 0]  # deep supervision: the full-resolution head
        loss = torch.nn.functional.cross_entropy(out, labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return net.eval()


def _save(ws: Workspace, plan: Any, net: torch.nn.Module) -> Path:
    return save_bundle(ws, "cnn", plan, net.state_dict(), deep_supervision=True,
                       validation={"mean_dice": 0.5, "dice_per_case": {}}, training={"stopped_reason": "test"},
                       train_cases=[], val_cases=[], history=[])


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return float(2 * np.logical_and(a, b).sum() / max(a.sum() + b.sum(), 1))


@pytest.mark.parametrize("spatial_dims", [3, 2])
def test_transposed_weights_give_the_transposed_network(spatial_dims: int) -> None:
    """MONAI's DynUNet from the exported kwargs, loaded 1:1 with the transposed state_dict, equals medseg's
    network on transposed input (anisotropic kernels and strides included)."""
    plan = phantom.make_plan(patch_size=(16, 32, 32) if spatial_dims == 3 else (1, 32, 48), spatial_dims=spatial_dims)
    torch.manual_seed(1)
    net = build_segmenter(plan, deep_supervision=True).eval()
    monai_net = DynUNet(**monai_network_kwargs(plan, deep_supervision=True)).eval()
    monai_net.load_state_dict(transposed_state_dict(net.state_dict()), strict=True)
    x = torch.randn(1, 1, *plan.patch_size[3 - spatial_dims:])
    flip = (0, 1, *reversed(range(2, 2 + spatial_dims)))
    with torch.no_grad():
        ref = net(x)
        got = monai_net(x.permute(*flip)).permute(*flip)
    torch.testing.assert_close(got, ref, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("spatial_dims", [3])  # 2D plans (SliceInferer): network equivalence tested above only
def test_monai_bundle_run_predicts_what_medseg_predicts(tmp_path: Path, spatial_dims: int) -> None:
    from monai.bundle import run

    plan = phantom.make_plan(patch_size=(16, 32, 32) if spatial_dims == 3 else (1, 32, 32), spatial_dims=spatial_dims)
    bundle_path = _save(Workspace.at(tmp_path / "ws").ensure(), plan, _trained_network(plan))
    hu, truth = phantom.phantom_hu((22, 56, 64), 7, NATIVE_SPACING)
    image = np.round(hu).astype(np.int16)
    geometry = Geometry.create(NATIVE_SPACING, (-30.0, 12.5, 100.0))
    write_nifti(tmp_path / "images" / "case.nii.gz", image, geometry)
    expected = predict_volume(load_bundle(bundle_path), image, geometry, FP32, "cpu")
    assert _dice(expected == 1, truth == 1) > 0.7  # the model segments the organ: the comparison means something

    out = export_monai_bundle(bundle_path, tmp_path / "monai_bundle", FP32)
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()) == [
        "configs/inference.json", "configs/metadata.json", "models/model.pt"]
    run(config_file=str(out / "configs" / "inference.json"), meta_file=str(out / "configs" / "metadata.json"),
        bundle_root=str(out), dataset_dir=str(tmp_path / "images"), output_dir=str(tmp_path / "pred"),
        logging_file=False)
    got, got_geometry = read_nifti(tmp_path / "pred" / "case_seg.nii.gz")
    assert got.shape == expected.shape
    np.testing.assert_allclose(got_geometry.nifti_affine(), geometry.nifti_affine(), atol=1e-4)
    equal = float((got == expected).mean())
    dice = [_dice(got == c, expected == c) for c in (1, 2) if (expected == c).any()]
    print(f"MONAI bundle vs medseg ({spatial_dims}D): {equal:.4%} voxels equal, Dice per class "
          f"{np.round(dice, 4).tolist()}")
    assert equal >= 0.99 and min(dice) >= 0.95


def test_ensemble_and_multi_channel_bundles_are_refused(tmp_path: Path) -> None:
    from saved_bundles import save_ensemble

    from medseg.plan import ChannelNormalization, Normalization

    ws = phantom.write_phantom_workspace(tmp_path / "ws", n_train=2, n_val=0)
    scores = {c: {"organ": 0.5, "lesion": 0.5} for c in ("case000", "case001")}
    with pytest.raises(UnsupportedExport, match="2-fold ensemble"):
        export_monai_bundle(save_ensemble(ws, scores), tmp_path / "e")
    channels = [ChannelNormalization(name=n, normalization=Normalization.ZSCORE) for n in ("T1", "FLAIR")]
    plan = phantom.make_plan().model_copy(update={"channels": channels, "normalization": Normalization.ZSCORE})
    with pytest.raises(UnsupportedExport, match=r"2 channels \['T1', 'FLAIR'\]"):
        export_monai_bundle(_save(ws, plan, build_segmenter(plan, deep_supervision=True)), tmp_path / "m")
    assert not (tmp_path / "e").exists() and not (tmp_path / "m").exists()
