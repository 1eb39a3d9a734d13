"""Streaming sliding window == MONAI's SlidingWindowInferer / SliceInferer (positions, weights, blending)."""

from __future__ import annotations

import numpy as np
import phantom_data as phantom
import pytest
import torch

from medseg.config import InferConfig
from medseg.inference.sliding import predict_logits
from medseg.inference.stream import YIELD_PLANES, flip_dims, logits_volume, stream_logits
from medseg.inference.windows import window_grid


class TinyNet(torch.nn.Module):
    """Random 3-class conv net (3D or 2D), translation-variant enough to expose any blending error."""

    def __init__(self, dims: int = 3, seed: int = 0) -> None:
        super().__init__()
        torch.manual_seed(seed)
        conv = torch.nn.Conv3d if dims == 3 else torch.nn.Conv2d
        self.a = conv(1, 4, 3, padding=1)
        self.b = conv(4, 3, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(torch.tanh(self.a(x)))


@pytest.mark.parametrize(
    "shape,overlap,batch",
    [((40, 50, 45), 0.5, 2), ((12, 20, 70), 0.25, 3), ((33, 32, 31), 0.5, 1), ((7, 64, 40), 0.6, 4)],
)
def test_stream_equals_monai_sliding_window_3d(shape: tuple[int, int, int], overlap: float, batch: int) -> None:
    plan = phantom.make_plan(patch_size=(16, 32, 32))
    net = TinyNet(3)
    image = np.random.default_rng(1).normal(size=shape).astype(np.float32)
    cfg = InferConfig(overlap=overlap, sw_batch_size=batch, precision="fp32")
    ours = logits_volume(net, image, plan, cfg)
    ref = predict_logits(net, torch.from_numpy(image)[None, None], plan, cfg, torch.device("cpu"))[0].numpy()
    assert ours.shape == ref.shape == (3, *shape)
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-5)


def test_stream_equals_monai_slice_inferer_2d() -> None:
    plan = phantom.make_plan(patch_size=(1, 32, 32), spatial_dims=2)
    net = TinyNet(2)
    image = np.random.default_rng(2).normal(size=(6, 45, 28)).astype(np.float32)
    cfg = InferConfig(overlap=0.5, sw_batch_size=3, precision="fp32")
    ours = logits_volume(net, image, plan, cfg)
    ref = predict_logits(net, torch.from_numpy(image)[None, None], plan, cfg, torch.device("cpu"))[0].numpy()
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-5)


def test_slabs_are_contiguous_and_bounded() -> None:
    plan = phantom.make_plan(patch_size=(16, 32, 32))
    image = np.zeros((70, 40, 40), dtype=np.float32)
    cfg = InferConfig(overlap=0.5, precision="fp32")
    slabs = [(z0, p.shape) for z0, p in stream_logits(TinyNet(3), image, plan, cfg)]
    starts = [z0 for z0, _ in slabs]
    assert starts[0] == 0 and all(b == a + s[1] for (a, s), b in zip(slabs, starts[1:], strict=False))
    assert sum(s[1] for _, s in slabs) == 70
    assert max(s[1] for _, s in slabs) <= YIELD_PLANES  # small pieces, never the whole volume
    grid = window_grid((70, 40, 40), (16, 32, 32), 0.5)
    assert len(slabs) >= len(grid.starts[0])


def test_mirror_tta_per_window() -> None:
    plan = phantom.make_plan(patch_size=(16, 32, 32))
    image = np.random.default_rng(3).normal(size=(20, 40, 36)).astype(np.float32)
    # a 1x1x1 convolution commutes with flips: TTA must not change its logits
    torch.manual_seed(0)
    pointwise = torch.nn.Conv3d(1, 3, 1)
    plain = logits_volume(pointwise, image, plan, InferConfig(precision="fp32"))
    tta = logits_volume(pointwise, image, plan, InferConfig(mirror_tta=True, precision="fp32"))
    np.testing.assert_allclose(tta, plain, rtol=1e-5, atol=1e-5)
    # a net that is not flip-equivariant: TTA = mean over the 8 flips of each window, blended
    net = TinyNet(3)
    tta = logits_volume(net, image, plan, InferConfig(mirror_tta=True, precision="fp32"))
    flipped = [logits_volume(_Flipped(net, dims), image, plan, InferConfig(precision="fp32")) for dims in flip_dims(3)]
    np.testing.assert_allclose(tta, np.mean(flipped, axis=0), rtol=1e-4, atol=1e-5)
    assert not np.allclose(tta, logits_volume(net, image, plan, InferConfig(precision="fp32")), atol=1e-3)


class _Flipped(torch.nn.Module):
    def __init__(self, net: torch.nn.Module, dims: tuple[int, ...]) -> None:
        super().__init__()
        self.net, self.dims = net, dims

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.dims:
            return self.net(x)
        return torch.flip(self.net(torch.flip(x, self.dims)), self.dims)
