from __future__ import annotations

import pytest
import torch
from phantom_data import make_plan

from medseg.training.network import build_discriminator, build_segmenter, deep_supervision_heads


def test_3d_segmenter_shapes_follow_plan() -> None:
    plan = make_plan(patch_size=(16, 32, 32), filters=(4, 8, 16, 32))
    net = build_segmenter(plan, deep_supervision=True)
    x = torch.randn(2, 1, 16, 32, 32)
    net.train()
    out = net(x)
    assert out.shape == (2, 1 + deep_supervision_heads(plan), plan.num_classes, 16, 32, 32)
    net.eval()
    with torch.no_grad():
        assert net(x).shape == (2, plan.num_classes, 16, 32, 32)
    # filters of the plan are used level by level
    assert net.input_block.conv1.conv.out_channels == 4
    assert net.bottleneck.conv1.conv.out_channels == 32


def test_2d_segmenter_from_2d_plan_accepts_3_element_kernels() -> None:
    plan = make_plan(patch_size=(1, 32, 32), spatial_dims=2).model_copy(
        update={"kernel_sizes": [[1, 3, 3]] * 4, "strides": [[1, 1, 1], [1, 2, 2], [1, 2, 2], [1, 2, 2]]}
    )
    net = build_segmenter(plan, deep_supervision=False).eval()
    with torch.no_grad():
        assert net(torch.randn(3, 1, 32, 32)).shape == (3, plan.num_classes, 32, 32)


def test_plan_with_too_few_filters_is_a_clear_error() -> None:
    plan = make_plan(filters=(4, 8))
    with pytest.raises(ValueError, match="filters"):
        build_segmenter(plan, deep_supervision=False)


@pytest.mark.parametrize("dims,shape", [(3, (2, 4, 16, 32, 32)), (2, (2, 4, 32, 32))])
def test_discriminator_is_patchgan_with_spectral_norm(dims: int, shape: tuple[int, ...]) -> None:
    d = build_discriminator(in_channels=4, channels=8, spatial_dims=dims)
    out = d(torch.randn(*shape))
    assert out.shape == (shape[0], 1, *[s // 8 for s in shape[2:]])
    convs = [m for m in d.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Conv3d))]
    assert convs and all(torch.nn.utils.parametrize.is_parametrized(m, "weight") for m in convs)
