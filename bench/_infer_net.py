"""Pure-torch 3D U-Net shared by bench/infer.py's tools (importable from the project venv and nnU-Net's).

nnU-Net loads it through its plans (``network_class_name = "_infer_net.BenchUNet"``, module on
PYTHONPATH); medseg and the plain MONAI loop build it directly. All load the same weights file.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


def _block(c_in: int, c_out: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv3d(c_in, c_out, 3, stride=stride, padding=1),
        nn.InstanceNorm3d(c_out, affine=True),
        nn.LeakyReLU(0.01, inplace=True),
        nn.Conv3d(c_out, c_out, 3, padding=1),
        nn.InstanceNorm3d(c_out, affine=True),
        nn.LeakyReLU(0.01, inplace=True),
    )


class BenchUNet(nn.Module):
    """Plain conv U-Net: ``(B, input_channels, z, y, x)`` -> logits ``(B, num_classes, z, y, x)``.

    Spatial sizes must be divisible by ``2 ** (len(features) - 1)``.
    """

    def __init__(self, input_channels: int, num_classes: int, features: Sequence[int] = (8, 16, 32, 64),
                 deep_supervision: bool = False) -> None:
        super().__init__()
        feats = list(features)
        self.down = nn.ModuleList(
            [_block(input_channels if i == 0 else feats[i - 1], f, 1 if i == 0 else 2) for i, f in enumerate(feats)]
        )
        self.up = nn.ModuleList(
            [nn.ConvTranspose3d(feats[i + 1], feats[i], 2, stride=2) for i in range(len(feats) - 1)]
        )
        self.dec = nn.ModuleList([_block(2 * feats[i], feats[i], 1) for i in range(len(feats) - 1)])
        self.head = nn.Conv3d(feats[0], num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for i, block in enumerate(self.down):
            x = block(x)
            if i < len(self.down) - 1:
                skips.append(x)
        for i in reversed(range(len(self.up))):
            x = self.dec[i](torch.cat([self.up[i](x), skips[i]], dim=1))
        return self.head(x)
