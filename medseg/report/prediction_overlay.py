"""PNG of one case's predictions on its image, without a reference (QA of unlabeled studies).

One panel per model, side by side: the windowed axial slice with that model's classes tinted in the
stores' label colours (:func:`medseg.io.volume_store.label_color`) and outlined. All panels show the
same slice: the one with the most predicted foreground over all models (the middle slice when every
prediction is empty). Object-oriented matplotlib (no pyplot), as :mod:`medseg.report.overlay`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from numpy.typing import NDArray

from medseg.io.volume_store import label_color
from medseg.preprocess.stream import ArraySource
from medseg.report.overlay import OVERLAY_SIZE_PX, pick_slice, save_overlay, window_image

_DPI = 100
_ALPHA = 0.45


def _tinted(base: NDArray[np.float64], label_2d: NDArray[Any]) -> NDArray[np.float64]:
    """``(y, x, 3)``: grey ``base`` with each class > 0 blended with its label colour."""
    rgb = np.repeat(base[..., None], 3, axis=-1)
    for value in np.unique(label_2d):
        if value == 0:
            continue
        mask = label_2d == value
        color = np.asarray(label_color(int(value))[:3], dtype=np.float64) / 255.0
        rgb[mask] = (1 - _ALPHA) * rgb[mask] + _ALPHA * color
    return rgb


def prediction_overlay_png(
    image_zyx: ArraySource,
    predictions: Mapping[str, NDArray[Any]],
    out: Path,
    title: str,
    spacing: tuple[float, float, float] | None = None,
) -> Path:
    """Write the predictions of one case over its image (one panel per model) to ``out``.

    Args:
        image_zyx: ``(z, y, x)`` image: numpy or a lazy (Zarr) array, of which one slice is read.
        predictions: ``{model name: (z, y, x) label map}`` on the image's grid (at least one).
        out: PNG path (parent folders are created).
        title: figure title (case id, score, the first reason ...).
        spacing: ``(z, y, x)`` mm; sets the in-plane aspect ratio (default square pixels).

    Returns:
        ``out``; the image is :data:`~medseg.report.overlay.OVERLAY_SIZE_PX` pixels.
    """
    shape = tuple(int(s) for s in image_zyx.shape)
    if len(shape) != 3:
        raise ValueError(f"overlay {title!r}: image must be 3D (z, y, x), got shape {shape}")
    if not predictions:
        raise ValueError(f"overlay {title!r}: no prediction to show")
    labels = {m: np.asarray(p) for m, p in predictions.items()}
    for model, lab in labels.items():
        if lab.shape != shape:
            raise ValueError(f"overlay {title!r}: {model} prediction shape {lab.shape} != image shape {shape}")
    union = np.any(np.stack([lab != 0 for lab in labels.values()]), axis=0)
    z = pick_slice(union)
    base = window_image(np.asarray(image_zyx[z]))
    aspect = 1.0 if spacing is None else float(spacing[1]) / float(spacing[2])
    fig = Figure(figsize=(OVERLAY_SIZE_PX[0] / _DPI, OVERLAY_SIZE_PX[1] / _DPI), dpi=_DPI)
    axes = np.atleast_1d(fig.subplots(1, len(labels)))
    for ax, (model, lab) in zip(axes, labels.items(), strict=True):
        plane = lab[z]
        ax.imshow(_tinted(base, plane), aspect=aspect, interpolation="nearest")
        for value in np.unique(plane):
            if value != 0:
                color = np.asarray(label_color(int(value))[:3]) / 255.0
                ax.contour((plane == value).astype(np.float32), levels=[0.5], colors=[color], linewidths=1.0)
        voxels = int(np.count_nonzero(lab))
        ax.set_title(f"{model}" + ("" if voxels else " (empty)"), fontsize=9)
        ax.set_axis_off()
    return save_overlay(fig, out, f"{title} (slice {z}/{shape[0] - 1})", fontsize=10, top=0.86)
