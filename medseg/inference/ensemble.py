"""Ensemble inference: the mean of several models' softmax probabilities, one finished z-slab at a time.

A k-fold ensemble bundle (``train.folds`` > 1) predicts with every fold model. Each model runs its own
Gaussian sliding window (:func:`medseg.inference.stream.stream_logits`, mirror TTA per window); the
streams advance together, so every model hands out the same planes ``[z0, z0 + n)`` at the same time.
Per slab the softmax of each model's blended logits is added to a running sum, which is divided by k:
the label is then the argmax of the mean probabilities (as ``nnUNetv2_ensemble`` averages the
probabilities of its members; nnU-Net's own fold ensemble at prediction time averages the logits).

Memory: k window-deep slab accumulators (one per stream) plus one slab of summed probabilities, never
k probability volumes: the working set grows with k but not with the volume's depth.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from torch import nn

from medseg.config import InferConfig
from medseg.inference.stream import stream_logits
from medseg.plan import Plan
from medseg.preprocess.stream import ArraySource


def softmax(logits: NDArray[np.float32]) -> NDArray[np.float32]:
    """Softmax over the class axis (0) of ``(C, ...)`` float32 logits."""
    return torch.from_numpy(np.ascontiguousarray(logits, dtype=np.float32)).softmax(dim=0).numpy()


def stream_probabilities(
    networks: Sequence[nn.Module],
    image: ArraySource | Sequence[ArraySource],
    plan: Plan,
    cfg: InferConfig,
    device: torch.device | str = "cpu",
) -> Iterator[tuple[int, NDArray[np.float32]]]:
    """Mean softmax probabilities of ``networks`` on a preprocessed image, one finished z-slab at a time.

    Args:
        networks: the members (all built from ``plan`` and already on ``device``).
        image: preprocessed ``(z, y, x)`` float32 image (numpy or on-disk array, read slab by slab), or a
            list of them, one per input channel (plan order).
        plan: the plan of the networks.
        cfg: ``overlap``, ``sw_batch_size``, ``mirror_tta``, ``precision``.
        device: where the networks run.

    Yields:
        ``(z0, probs)`` with ``probs`` float32 ``(num_classes, n, y, x)`` for planes ``[z0, z0 + n)``
        (the mean over the members of their softmax); successive slabs cover the whole image.
    """
    if not networks:
        raise ValueError("stream_probabilities needs at least one network")
    streams = [stream_logits(net, image, plan, cfg, device) for net in networks]
    for parts in zip(*streams, strict=True):
        z0 = parts[0][0]
        total: NDArray[np.float32] | None = None
        for z, logits in parts:
            if z != z0 or logits.shape != parts[0][1].shape:
                raise RuntimeError(f"ensemble members handed out different slabs ({z} vs {z0}); this is a bug")
            probs = softmax(logits)
            total = probs if total is None else np.add(total, probs, out=total)
        assert total is not None
        yield z0, total / np.float32(len(networks))


def probabilities_volume(
    networks: Sequence[nn.Module], image: ArraySource, plan: Plan, cfg: InferConfig,
    device: torch.device | str = "cpu",
) -> NDArray[np.float32]:
    """Whole mean probabilities ``(num_classes, z, y, x)`` from :func:`stream_probabilities` (small volumes, tests)."""
    parts: list[NDArray[Any]] = [p for _, p in stream_probabilities(networks, image, plan, cfg, device)]
    return np.concatenate(parts, axis=1)
