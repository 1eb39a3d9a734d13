"""Network builders: the plan-driven segmenter (MONAI DynUNet) and the GAN discriminator (PatchGAN).

Both are plain ``nn.Module``s; nothing here knows about data, devices or optimisers.
"""

from __future__ import annotations

from typing import Any

import torch
from monai.networks.nets import DynUNet
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from medseg.plan import Plan


def _per_dim(values: list[list[int]], spatial_dims: int, what: str) -> list[list[int]]:
    """Adapt plan kernels/strides to ``spatial_dims`` (a 2D plan may store 3-element ``[1, k, k]`` lists)."""
    out: list[list[int]] = []
    for i, v in enumerate(values):
        v = [int(x) for x in v]
        if len(v) == spatial_dims:
            out.append(v)
        elif spatial_dims == 2 and len(v) == 3:
            out.append(v[1:])
        else:
            raise ValueError(
                f"plan.{what}[{i}] = {v} does not match spatial_dims={spatial_dims}; "
                "re-run `medseg preprocess` to regenerate the plan"
            )
    return out


def deep_supervision_heads(plan: Plan) -> int:
    """Extra (lower resolution) outputs used for deep supervision: all levels but the two coarsest."""
    return max(1, len(plan.strides) - 2)


def segmenter_kwargs(plan: Plan, deep_supervision: bool) -> dict[str, Any]:
    """Keyword arguments of :class:`monai.networks.nets.DynUNet` derived from ``plan`` (validated)."""
    dims = plan.spatial_dims
    kernels = _per_dim(plan.kernel_sizes, dims, "kernel_sizes")
    strides = _per_dim(plan.strides, dims, "strides")
    if len(kernels) != len(strides) or len(strides) < 3:
        raise ValueError(
            f"plan has {len(kernels)} kernel_sizes and {len(strides)} strides; "
            "DynUNet needs the same number, at least 3"
        )
    if len(plan.filters) < len(strides):
        raise ValueError(
            f"plan.filters {plan.filters} has {len(plan.filters)} entries but the plan has {len(strides)} "
            "resolution levels; set train.filters to at least that many values and re-run preprocess"
        )
    return {
        "spatial_dims": dims,
        "in_channels": plan.in_channels,
        "out_channels": plan.num_classes,
        "kernel_size": kernels,
        "strides": strides,
        "upsample_kernel_size": strides[1:],
        "filters": list(plan.filters[: len(strides)]),
        "norm_name": ("INSTANCE", {"affine": True}),
        "act_name": ("leakyrelu", {"inplace": True, "negative_slope": 0.01}),
        "deep_supervision": deep_supervision,
        "deep_supr_num": deep_supervision_heads(plan),
        "res_block": False,
    }


def build_segmenter(plan: Plan, deep_supervision: bool) -> DynUNet:
    """DynUNet whose topology (kernels, strides, filters, classes, 2D/3D) comes from ``plan``.

    Input ``(B, 1, *patch)`` with ``patch`` = ``plan.patch_size`` (``(y, x)`` only for a 2D plan);
    output logits ``(B, num_classes, *patch)`` in eval mode, or ``(B, 1 + heads, num_classes, *patch)``
    in training mode with deep supervision (lower-resolution heads upsampled to the patch size).
    """
    return DynUNet(**segmenter_kwargs(plan, deep_supervision))


class PatchDiscriminator(nn.Module):
    """PatchGAN discriminator with spectral normalisation (no batch/instance norm).

    Input ``(B, in_channels, *spatial)``; output ``(B, 1, *spatial / 8)`` unbounded realness scores
    (LSGAN targets: 1 real, 0 fake).
    """

    def __init__(self, in_channels: int, channels: int, spatial_dims: int) -> None:
        super().__init__()
        if spatial_dims not in (2, 3):
            raise ValueError(f"discriminator spatial_dims must be 2 or 3, got {spatial_dims}")
        conv: type[nn.Conv2d] | type[nn.Conv3d] = nn.Conv3d if spatial_dims == 3 else nn.Conv2d
        widths = [in_channels, channels, channels * 2, channels * 4]
        layers: list[nn.Module] = []
        for c_in, c_out in zip(widths[:-1], widths[1:], strict=True):
            layers += [
                spectral_norm(conv(c_in, c_out, kernel_size=4, stride=2, padding=1)),
                nn.LeakyReLU(0.2),
            ]
        layers.append(spectral_norm(conv(widths[-1], 1, kernel_size=3, stride=1, padding=1)))
        self.net = nn.Sequential(*layers)
        self.in_channels = in_channels
        self.spatial_dims = spatial_dims

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.net(x)
        return out


def build_discriminator(in_channels: int, channels: int, spatial_dims: int) -> nn.Module:
    """3D (or 2D) PatchGAN with spectral norm judging ``image ⊕ class probabilities``.

    See :class:`PatchDiscriminator` for shapes.
    """
    return PatchDiscriminator(in_channels, channels, spatial_dims)
