"""Patch augmentation on the training device (``train.gpu_augmentation``), batched torch ops.

The sampler draws the parameters on the CPU (:func:`medseg.training.augment.draw_augmentation`, so a
run is deterministic given its seed); this module applies them to a batch already on the device:
in-plane rotation + zoom (``affine_grid``/``grid_sample``: trilinear for the image with border
padding, nearest for the label with zero padding), flips, Gaussian noise (seeded per patch),
brightness, contrast and gamma — the same transforms as :func:`~medseg.training.augment.augment_patch`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def _index_matrix(angle: float, scale: float, dims: int, z_size: int) -> torch.Tensor:
    """Index-space map (array axis order) output -> input about the centre: ``R(angle) / scale``."""
    c, s = math.cos(angle), math.sin(angle)
    m = torch.tensor([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]], dtype=torch.float64) / scale
    m[0, 0] = 1.0 / scale if z_size > 1 else 1.0
    return m if dims == 3 else m[1:, 1:]


def affine_theta(angle: float, scale: float, spatial: tuple[int, ...]) -> torch.Tensor:
    """``affine_grid`` matrix ``(dims, dims + 1)`` (coordinates in x, y(, z) order, align_corners=True).

    Args:
        angle: in-plane (y-x) rotation in radians.
        scale: zoom factor (> 1 enlarges the content).
        spatial: patch shape in array order, ``(z, y, x)`` or ``(y, x)``.
    """
    dims = len(spatial)
    m = _index_matrix(angle, scale, dims, spatial[0] if dims == 3 else 1)
    half = torch.tensor([(n - 1) / 2 if n > 1 else 1.0 for n in spatial], dtype=torch.float64)
    a = m * half[None, :] / half[:, None]  # normalised coordinates: D m D^-1 with D = diag(1 / half)
    for i, n in enumerate(spatial):
        if n == 1:
            a[i, :], a[:, i] = 0.0, 0.0
            a[i, i] = 1.0
    a = a.flip(0).flip(1)  # grid_sample orders coordinates x, y, z
    return torch.cat([a, torch.zeros(dims, 1, dtype=torch.float64)], dim=1)


def augment_batch(
    image: torch.Tensor, label: torch.Tensor, aug: dict[str, torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Apply drawn augmentations to a batch on its device.

    Args:
        image: ``(B, 1, *S)`` float image patches (``S`` = ``(z, y, x)`` or ``(y, x)``).
        label: ``(B, 1, *S)`` int64 label patches.
        aug: batched draws of :func:`~medseg.training.augment.draw_augmentation` (tensors, leading dim
            ``B``; any device).

    Returns:
        ``(image, label)`` of the same shapes, dtypes and device.
    """
    image = image.float().clone()
    label = label.clone()
    batch = image.shape[0]
    spatial = tuple(int(n) for n in image.shape[2:])
    dims = len(spatial)
    cpu = {k: v.detach().cpu() for k, v in aug.items()}
    todo = [b for b in range(batch) if bool(cpu["spatial"][b])]
    if todo:
        theta = torch.stack(
            [affine_theta(float(cpu["angle"][b]), float(cpu["scale"][b]), spatial) for b in todo]
        ).to(image.device, torch.float32)
        size = [len(todo), 1, *spatial]
        grid = F.affine_grid(theta, size, align_corners=True)
        idx = torch.tensor(todo, device=image.device)
        image[idx] = F.grid_sample(image[idx], grid, mode="bilinear", padding_mode="border", align_corners=True)
        lab = F.grid_sample(label[idx].float(), grid, mode="nearest", padding_mode="zeros", align_corners=True)
        label[idx] = lab.round().long()
    for b in range(batch):
        flips = cpu["flip"][b].tolist()
        axes = [a for a, f in enumerate(flips) if f and (dims == 3 or a > 0)]
        flip_dims = [a + 1 if dims == 3 else a for a in axes]  # per-sample tensor (1, *S)
        if flip_dims:
            image[b] = torch.flip(image[b], flip_dims)
            label[b] = torch.flip(label[b], flip_dims)
        x = image[b]
        std = float(cpu["noise_std"][b])
        if std > 0:
            gen = torch.Generator(device=image.device)
            gen.manual_seed(int(cpu["noise_seed"][b]))
            x = x + std * torch.randn(x.shape, generator=gen, device=x.device, dtype=x.dtype)
        x = x * float(cpu["brightness"][b])
        if bool(cpu["do_contrast"][b]):
            mean, lo, hi = x.mean(), x.min(), x.max()
            x = torch.clamp((x - mean) * float(cpu["contrast"][b]) + mean, lo, hi)
        if bool(cpu["do_gamma"][b]):
            lo, hi = x.min(), x.max()
            span = torch.clamp(hi - lo, min=1e-7)
            x = torch.pow((x - lo) / span, float(cpu["gamma"][b])) * span + lo
        image[b] = x
    return image, label
