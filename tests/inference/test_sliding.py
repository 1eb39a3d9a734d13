from __future__ import annotations

import numpy as np
import phantom_data as phantom
import pytest
import torch

from medseg.config import InferConfig
from medseg.inference.sliding import mirror_axes, predict_preprocessed


class Pointwise(torch.nn.Module):
    """Per-voxel logits (w * x + b per class): any correct sliding window reproduces it exactly."""

    def __init__(self, dims: int) -> None:
        super().__init__()
        conv = torch.nn.Conv3d if dims == 3 else torch.nn.Conv2d
        self.conv = conv(1, 3, kernel_size=1)
        with torch.no_grad():
            self.conv.weight.copy_(torch.tensor([0.0, 2.0, -2.0]).view(3, 1, *([1] * dims)))
            assert self.conv.bias is not None
            self.conv.bias.copy_(torch.tensor([0.0, -0.5, -1.0]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.conv(x)
        return out


def _direct(net: Pointwise, image: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        x = torch.from_numpy(image)[None, None]
        if isinstance(net.conv, torch.nn.Conv2d):
            x = x[:, :, 0] if image.shape[0] == 1 else x.squeeze(0).permute(1, 0, 2, 3)
            return torch.softmax(net(x), 1).permute(1, 0, 2, 3).numpy()
        return torch.softmax(net(x), 1)[0].numpy()


@pytest.mark.parametrize("tta", [False, True])
def test_sliding_window_reproduces_a_pointwise_network(tta: bool) -> None:
    plan = phantom.make_plan(patch_size=(16, 32, 32))
    image = np.random.default_rng(0).normal(size=(20, 40, 50)).astype(np.float32)  # not a patch multiple
    net = Pointwise(3)
    cfg = InferConfig(overlap=0.5, sw_batch_size=3, mirror_tta=tta, precision="fp32")
    probs = predict_preprocessed(net, image, plan, cfg)
    assert probs.shape == (3, 20, 40, 50) and probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(0), 1.0, atol=1e-5)
    np.testing.assert_allclose(probs, _direct(net, image), atol=1e-5)


def test_volume_smaller_than_patch_is_padded_and_cropped_back() -> None:
    plan = phantom.make_plan(patch_size=(16, 32, 32))
    image = np.random.default_rng(1).normal(size=(5, 10, 12)).astype(np.float32)
    probs = predict_preprocessed(Pointwise(3), image, plan, InferConfig(precision="fp32"))
    assert probs.shape == (3, 5, 10, 12)
    np.testing.assert_allclose(probs, _direct(Pointwise(3), image), atol=1e-5)


def test_2d_plan_predicts_slice_by_slice() -> None:
    plan = phantom.make_plan(patch_size=(1, 32, 32), spatial_dims=2)
    image = np.random.default_rng(2).normal(size=(4, 40, 36)).astype(np.float32)
    net = Pointwise(2)
    probs = predict_preprocessed(net, image, plan, InferConfig(mirror_tta=True, precision="fp32"))
    assert probs.shape == (3, 4, 40, 36)
    np.testing.assert_allclose(probs, _direct(net, image), atol=1e-5)


def test_mirror_axes() -> None:
    assert len(mirror_axes(3)) == 8 and mirror_axes(3)[0] == ()
    assert mirror_axes(2) == [(), (3,), (4,), (3, 4)]


def test_training_mode_is_restored_and_bad_input_rejected() -> None:
    plan = phantom.make_plan()
    net = Pointwise(3).train()
    predict_preprocessed(net, np.zeros((16, 32, 32), np.float32), plan)
    assert net.training
    with pytest.raises(ValueError, match="z, y, x"):
        predict_preprocessed(net, np.zeros((32, 32), np.float32), plan)
