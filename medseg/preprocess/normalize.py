"""Intensity normalisation (nnU-Net's CTNormalization and ZScoreNormalization)."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from medseg.plan import Normalization, Plan

_EPS = 1e-8


def normalize(
    img: NDArray[Any], plan: Plan, nonzero_mask: NDArray[np.bool_] | None = None
) -> NDArray[np.float32]:
    """Normalise an image ``(z, y, x)`` as the plan says.

    * CT: clip to the dataset foreground ``plan.clip_range`` (HU), then subtract
      ``plan.intensity_mean`` and divide by ``plan.intensity_std`` (both dataset statistics).
    * z-score: per-case mean/std computed inside ``nonzero_mask`` (whole image when None or
      empty); voxels outside the mask are set to 0.

    Args:
        img: image ``(z, y, x)``, any numeric dtype.
        plan: the plan carrying the scheme and the dataset statistics.
        nonzero_mask: bool mask, same shape as ``img`` (z-score only).

    Returns:
        float32 array, same shape as ``img``.
    """
    data = np.asarray(img, dtype=np.float32)
    if plan.normalization == Normalization.CT:
        if plan.clip_range is None or plan.intensity_mean is None or plan.intensity_std is None:
            raise ValueError(
                f"plan {plan.plan_hash()} uses CT normalisation but lacks"
                " clip_range/intensity_mean/intensity_std; re-run `medseg preprocess` to rebuild the plan"
            )
        lo, hi = plan.clip_range
        out = np.clip(data, lo, hi)
        out -= np.float32(plan.intensity_mean)
        out /= np.float32(max(plan.intensity_std, _EPS))
        return out
    if nonzero_mask is not None and nonzero_mask.shape != data.shape:
        raise ValueError(f"nonzero_mask shape {nonzero_mask.shape} != image shape {data.shape}")
    mask = (
        nonzero_mask if nonzero_mask is not None and nonzero_mask.any() and not nonzero_mask.all() else None
    )
    values = data[mask] if mask is not None else data
    mean = float(values.mean(dtype=np.float64))
    std = float(values.std(dtype=np.float64))
    out = (data - np.float32(mean)) / np.float32(max(std, _EPS))
    if mask is not None:
        out[~mask] = 0.0
    return out.astype(np.float32, copy=False)
