"""medseg.inference.ensemble: mean softmax of several models, slab by slab, equal to running each alone."""

from __future__ import annotations

import numpy as np
import phantom_data as phantom
import pytest
import torch

from medseg.config import InferConfig
from medseg.inference.ensemble import probabilities_volume, softmax, stream_probabilities
from medseg.inference.stream import logits_volume, stream_logits


class TinyNet(torch.nn.Module):
    """Random 3-class conv net: different seeds give different members."""

    def __init__(self, seed: int) -> None:
        super().__init__()
        torch.manual_seed(seed)
        self.a = torch.nn.Conv3d(1, 4, 3, padding=1)
        self.b = torch.nn.Conv3d(4, 3, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.b(torch.tanh(self.a(x)))


@pytest.mark.parametrize("mirror_tta", [False, True])
def test_mean_of_the_members_softmax_slab_by_slab(mirror_tta: bool) -> None:
    plan = phantom.make_plan(patch_size=(16, 32, 32))
    nets = [TinyNet(seed) for seed in range(2 if mirror_tta else 3)]
    image = np.random.default_rng(0).normal(size=(24, 34, 33)).astype(np.float32)
    cfg = InferConfig(overlap=0.5, sw_batch_size=2, precision="fp32", mirror_tta=mirror_tta)
    expected = np.mean([softmax(logits_volume(net, image, plan, cfg)) for net in nets], axis=0)
    np.testing.assert_allclose(probabilities_volume(nets, image, plan, cfg), expected, rtol=0, atol=1e-6)
    # the same slabs as one model's stream (several, so no whole-volume buffer), each a distribution
    slabs = list(stream_probabilities(nets, image, plan, cfg))
    assert [(z, p.shape) for z, p in slabs] == [(z, p.shape) for z, p in stream_logits(nets[0], image, plan, cfg)]
    assert len(slabs) > 1
    for _, p in slabs:
        np.testing.assert_allclose(p.sum(axis=0), 1.0, atol=1e-5)


def test_one_member_gives_its_own_softmax() -> None:
    plan = phantom.make_plan(patch_size=(16, 32, 32))
    net = TinyNet(5)
    image = np.random.default_rng(2).normal(size=(20, 33, 40)).astype(np.float32)
    cfg = InferConfig(precision="fp32")
    np.testing.assert_allclose(probabilities_volume([net], image, plan, cfg),
                               softmax(logits_volume(net, image, plan, cfg)), rtol=0, atol=1e-7)
    with pytest.raises(ValueError, match="at least one network"):
        list(stream_probabilities([], image, plan, cfg))
