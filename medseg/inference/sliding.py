"""Predictor core: sliding-window inference of a segmenter on one preprocessed volume.

Used by validation during training and by :mod:`medseg.inference.predict`. Logits of overlapping
windows are blended with a Gaussian weight map (nnU-Net), optionally averaged over mirrored copies
(test-time augmentation), then turned into class probabilities with a softmax.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import torch
from monai.inferers import SliceInferer, SlidingWindowInferer
from numpy.typing import NDArray
from torch import nn

from medseg.config import InferConfig
from medseg.inference.precision import inference_autocast
from medseg.plan import Plan


def mirror_axes(spatial_dims: int) -> list[tuple[int, ...]]:
    """Flip combinations used for mirror TTA: ``[()]`` plus every non-empty subset of the volume axes
    (tensor dims 2, 3, 4 of ``(B, C, z, y, x)``; only y and x for a 2D plan)."""
    axes = (2, 3, 4) if spatial_dims == 3 else (3, 4)
    combos: list[tuple[int, ...]] = [()]
    for r in range(1, len(axes) + 1):
        combos += list(itertools.combinations(axes, r))
    return combos


def make_inferer(plan: Plan, cfg: InferConfig) -> SlidingWindowInferer:
    """Gaussian-blended sliding window over the plan's patch (slice-by-slice for a 2D plan)."""
    common: dict[str, Any] = {
        "sw_batch_size": cfg.sw_batch_size,
        "overlap": cfg.overlap,
        "mode": "gaussian",
        "sigma_scale": 0.125,
        "padding_mode": "constant",
        "cval": 0.0,
    }
    if plan.spatial_dims == 2:
        return SliceInferer(roi_size=tuple(plan.patch_size[1:]), spatial_dim=0, **common)
    return SlidingWindowInferer(roi_size=tuple(plan.patch_size), **common)


def predict_logits(
    network: nn.Module, image: torch.Tensor, plan: Plan, cfg: InferConfig, device: torch.device
) -> torch.Tensor:
    """Blended logits ``(1, C, z, y, x)`` float32 (on ``device``) for an input ``(1, 1, z, y, x)``."""
    inferer = make_inferer(plan, cfg)
    combos = mirror_axes(plan.spatial_dims) if cfg.mirror_tta else [()]
    x = image.to(device=device, dtype=torch.float32)
    total: torch.Tensor | None = None
    was_training = network.training
    network.eval()
    try:
        with torch.inference_mode(), inference_autocast(device, cfg.precision):
            for axes in combos:
                xi = torch.flip(x, axes) if axes else x
                out = inferer(xi, network)
                assert isinstance(out, torch.Tensor)
                out = out.float()
                out = torch.flip(out, axes) if axes else out
                total = out if total is None else total + out
    finally:
        network.train(was_training)
    assert total is not None
    return total / len(combos)


def predict_preprocessed(
    network: nn.Module,
    image: NDArray[np.floating],
    plan: Plan,
    cfg: InferConfig | None = None,
    device: torch.device | str = "cpu",
) -> NDArray[np.float32]:
    """Class probabilities ``(num_classes, z, y, x)`` float32 for a preprocessed image ``(z, y, x)``.

    Args:
        network: segmenter (any train/eval mode; it is evaluated in eval mode and restored).
        image: normalised image at the plan's target spacing, ``(z, y, x)``, or ``(channels, z, y, x)``
            for a multi-channel plan.
        plan: the plan the network was trained with (patch size, 2D/3D).
        cfg: overlap, windows per batch and mirror TTA; defaults to :class:`InferConfig` defaults.
        device: where the network runs (the network is expected to already be there).
    """
    if image.ndim not in (3, 4):
        raise ValueError(f"predict_preprocessed expects a (z, y, x) or (channels, z, y, x) image, got shape "
                         f"{image.shape}")
    cfg = cfg or InferConfig(overlap=0.5, sw_batch_size=2, mirror_tta=False)
    dev = torch.device(device)
    x = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))
    x = x[None, None] if image.ndim == 3 else x[None]
    logits = predict_logits(network, x, plan, cfg, dev)
    probs = torch.softmax(logits, dim=1)[0]
    return probs.cpu().numpy().astype(np.float32, copy=False)
