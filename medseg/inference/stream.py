"""Gaussian sliding window that hands out finished z-slabs of blended logits (bounded memory).

Windows are visited z position by z position (MONAI's order: z outer, then y, then x). Once every
window starting at ``z = s_g`` has been added, no later window touches the planes before the next
start ``s_{g+1}``: those planes are final. They are divided by the summed weights, cropped from the
padding and yielded; the accumulator then slides down. So the working set is one window-deep slab::

    (num_classes + 1) * roi_z * Y * X * 4 bytes  (accumulator + weight sum, on ``device``)
    + roi_z * Y * X * 4 bytes                     (the input slab)
    + num_classes * YIELD_PLANES * Y * X * 4 bytes (one normalised piece handed out)

instead of MONAI's full ``num_classes * Z * Y * X`` float32 output plus count map. Without mirror
TTA the blended logits equal ``SlidingWindowInferer(mode="gaussian", sigma_scale=0.125)`` (same
window positions, weights and summation order; tested). Mirror TTA is applied per window
(nnU-Net's way: the logits of the flipped window are flipped back and averaged).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from typing import Any, cast

import numpy as np
import torch
from numpy.typing import NDArray
from torch import nn

from medseg.config import InferConfig
from medseg.inference.precision import inference_autocast
from medseg.inference.windows import WindowGrid, gaussian_weights, window_grid
from medseg.plan import Plan
from medseg.preprocess.stream import ArraySource

Shape3 = tuple[int, int, int]
#: finished planes handed out per yield (bounds the normalised copy: C * YIELD_PLANES * y * x floats).
YIELD_PLANES = 4


def window_shape(plan: Plan) -> Shape3:
    """The ``(z, y, x)`` window of a plan: its patch, or ``(1, y, x)`` for a slice-wise 2D plan."""
    p = plan.patch_size
    return (1, int(p[1]), int(p[2])) if plan.spatial_dims == 2 else (int(p[0]), int(p[1]), int(p[2]))


def flip_dims(spatial_dims: int) -> list[tuple[int, ...]]:
    """Flip combinations of mirror TTA for network inputs ``(B, C, *spatial)``: ``()`` + all subsets."""
    axes = tuple(range(2, 2 + spatial_dims))
    return [c for r in range(len(axes) + 1) for c in itertools.combinations(axes, r)]


def _read_slab(image: ArraySource, grid: WindowGrid, z_start: int) -> NDArray[np.float32]:
    """Padded planes ``[z_start, z_start + roi_z)`` (padded coordinates) of the image, zeros outside."""
    pz, py, px = grid.pad_lo
    rz = grid.roi[0]
    _, yp, xp = grid.padded_shape
    z, y, x = grid.shape
    slab = np.zeros((rz, yp, xp), dtype=np.float32)
    lo, hi = max(z_start - pz, 0), min(z_start - pz + rz, z)
    if hi > lo:
        slab[lo - (z_start - pz) : hi - (z_start - pz), py : py + y, px : px + x] = np.asarray(
            image[lo:hi], dtype=np.float32
        )
    return slab


def _run_network(network: nn.Module, batch: torch.Tensor, two_d: bool, flips: list[tuple[int, ...]]) -> torch.Tensor:
    """Mean logits ``(B, C, rz, ry, rx)`` float32 of ``batch`` ``(B, channels, rz, ry, rx)`` over the flips."""
    x = batch[:, :, 0] if two_d else batch
    total: torch.Tensor | None = None
    for dims in flips:
        out = network(torch.flip(x, dims) if dims else x)
        if isinstance(out, list | tuple):  # deep-supervision heads in training mode: main output first
            out = out[0]
        out = out.float()
        out = torch.flip(out, dims) if dims else out
        total = out if total is None else total + out
    assert total is not None
    if len(flips) > 1:
        total = total / len(flips)
    return total[:, :, None] if two_d else total


def stream_logits(
    network: nn.Module,
    image: ArraySource | Sequence[ArraySource],
    plan: Plan,
    cfg: InferConfig,
    device: torch.device | str = "cpu",
) -> Iterator[tuple[int, NDArray[np.float32]]]:
    """Blended logits of a preprocessed image, one finished z-slab at a time.

    Args:
        network: segmenter returning ``(B, num_classes, *window)`` logits; put in eval mode (and
            restored) here. It must already be on ``device``.
        image: preprocessed ``(z, y, x)`` float32 image (numpy or Zarr array, read slab by slab), or a
            list of them, one per input channel (plan order).
        plan: the plan of the network (window = its patch; 2D plans run slice by slice).
        cfg: ``overlap``, ``sw_batch_size`` and ``mirror_tta``.
        device: where the network runs and the accumulator lives (precision: ``cfg.precision``).

    Yields:
        ``(z0, logits)`` with ``logits`` float32 ``(num_classes, n, y, x)`` for planes
        ``[z0, z0 + n)``; successive slabs are contiguous and cover the whole image.
    """
    channels: list[ArraySource] = list(image) if isinstance(image, list | tuple) else [cast(ArraySource, image)]
    shape = tuple(int(s) for s in channels[0].shape)
    if len(shape) != 3:
        raise ValueError(f"stream_logits expects a (z, y, x) image, got shape {shape}")
    dev = torch.device(device)
    grid = window_grid((shape[0], shape[1], shape[2]), window_shape(plan), cfg.overlap)
    rz, ry, rx = grid.roi
    _, yp, xp = grid.padded_shape
    pz, py, px = grid.pad_lo
    two_d = plan.spatial_dims == 2
    weights = gaussian_weights((ry, rx) if two_d else grid.roi, dev).reshape(rz, ry, rx)
    flips: list[tuple[int, ...]] = flip_dims(2 if two_d else 3) if cfg.mirror_tta else [()]
    inplane = grid.inplane_starts()
    acc: torch.Tensor | None = None
    wsum = torch.zeros((rz, yp, xp), dtype=torch.float32, device=dev)
    z_starts = grid.starts[0]
    was_training = network.training
    network.eval()
    try:
        for g, s in enumerate(z_starts):
            slab = torch.from_numpy(np.stack([_read_slab(c, grid, s) for c in channels])).to(dev)  # (C, z, y, x)
            for b0 in range(0, len(inplane), cfg.sw_batch_size):
                starts = inplane[b0 : b0 + cfg.sw_batch_size]
                batch = torch.stack([slab[:, :, y : y + ry, x : x + rx] for y, x in starts])
                with torch.no_grad(), inference_autocast(dev, cfg.precision):
                    out = _run_network(network, batch, two_d, flips)
                if acc is None:
                    acc = torch.zeros((out.shape[1], rz, yp, xp), dtype=torch.float32, device=dev)
                for k, (y, x) in enumerate(starts):
                    acc[:, :, y : y + ry, x : x + rx] += out[k] * weights
                    wsum[:, y : y + ry, x : x + rx] += weights
            assert acc is not None
            del slab, batch, out
            n = z_starts[g + 1] - s if g + 1 < len(z_starts) else rz
            lo, hi = max(s, pz), min(s + n, pz + shape[0])  # planes [lo, hi) are final (z padding dropped)
            for a in range(lo, hi, YIELD_PLANES):
                b = min(a + YIELD_PLANES, hi)
                done = acc[:, a - s : b - s, py : py + shape[1], px : px + shape[2]]
                done = done / wsum[None, a - s : b - s, py : py + shape[1], px : px + shape[2]]
                yield a - pz, done.cpu().numpy().astype(np.float32, copy=False)
                del done
            for i in range(rz - n):  # slide the accumulator down by n planes
                acc[:, i].copy_(acc[:, i + n])
                wsum[i].copy_(wsum[i + n])
            acc[:, rz - n :] = 0
            wsum[rz - n :] = 0
    finally:
        network.train(was_training)


def logits_volume(
    network: nn.Module, image: ArraySource, plan: Plan, cfg: InferConfig, device: torch.device | str = "cpu"
) -> NDArray[np.float32]:
    """Whole blended logits ``(num_classes, z, y, x)`` from :func:`stream_logits` (small volumes, tests)."""
    parts: list[NDArray[Any]] = [p for _, p in stream_logits(network, image, plan, cfg, device)]
    return np.concatenate(parts, axis=1)
