"""PNG overlay of a prediction against the reference on one slice (matplotlib, Agg backend).

Uses the object-oriented :class:`matplotlib.figure.Figure` API (no pyplot, no global backend
switch), so it is safe in Dask worker threads and leaks no figures.

Left panel: windowed image with the reference contour (solid) and the prediction contour (dashed).
Right panel: error map — true positive (green), false positive (red), false negative (blue) —
where a voxel is a TP when both masks carry the same non-zero class (purple: both non-zero, different class).
The figure has a fixed pixel size, :data:`OVERLAY_SIZE_PX` (width, height).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from numpy.typing import NDArray

from medseg.evaluation.summary import CasePair, load_pair
from medseg.io.volume_store import open_array

#: (width, height) in pixels of every overlay PNG.
OVERLAY_SIZE_PX: tuple[int, int] = (1000, 500)
_DPI = 100
_GT_COLOR = "#00e000"
_PRED_COLOR = "#ff2020"


def pick_slice(gt_zyx: NDArray[Any], pred_zyx: NDArray[Any] | None = None) -> int:
    """Index of the axial slice (axis 0) with the most foreground in ``gt | pred``; middle slice if none."""
    fg = np.asarray(gt_zyx) != 0
    if pred_zyx is not None:
        fg = fg | (np.asarray(pred_zyx) != 0)
    counts = fg.reshape(fg.shape[0], -1).sum(axis=1)
    if counts.max(initial=0) == 0:
        return int(fg.shape[0] // 2)
    return int(np.argmax(counts))


def window_image(image_2d: NDArray[Any], window: tuple[float, float] | None = None) -> NDArray[np.float64]:
    """Scale an image slice to [0, 1].

    Args:
        image_2d: ``(y, x)`` intensities (HU for CT, arbitrary for MR).
        window: ``(center, width)`` in image units; default = robust 0.5-99.5 percentile range.
    """
    img = np.asarray(image_2d, dtype=np.float64)
    if window is not None:
        center, width = window
        lo, hi = center - width / 2.0, center + width / 2.0
    else:
        finite = img[np.isfinite(img)]
        lo, hi = (
            (float(np.percentile(finite, 0.5)), float(np.percentile(finite, 99.5))) if finite.size else (0, 1)
        )
    if hi <= lo:
        hi = lo + 1.0
    return np.clip((np.nan_to_num(img, nan=lo) - lo) / (hi - lo), 0.0, 1.0)


def _contours(ax: Any, label_2d: NDArray[Any], color: str, style: str) -> None:
    for value in np.unique(label_2d):
        if value == 0:
            continue
        mask = (label_2d == value).astype(np.float32)
        ax.contour(mask, levels=[0.5], colors=[color], linewidths=1.4, linestyles=style)


_TP_RGB = (0.1, 0.8, 0.1)
_FP_RGB = (1.0, 0.15, 0.15)
_FN_RGB = (0.15, 0.35, 1.0)
_WRONG_CLASS_RGB = (0.8, 0.2, 0.9)


def _error_rgb(gt_2d: NDArray[Any], pred_2d: NDArray[Any], base: NDArray[np.float64]) -> NDArray[np.float64]:
    """``(y, x, 3)`` image: grey ``base`` with TP/FP/FN (and wrong-class) voxels tinted (55 % opacity)."""
    gray = np.repeat(base[..., None], 3, axis=-1)
    rgb = gray.copy()
    tp = (gt_2d != 0) & (pred_2d == gt_2d)
    fp = (pred_2d != 0) & (pred_2d != gt_2d)
    fn = (gt_2d != 0) & (pred_2d != gt_2d)
    for mask, color in (
        (tp, _TP_RGB),
        (fp & ~fn, _FP_RGB),
        (fn & ~fp, _FN_RGB),
        (fp & fn, _WRONG_CLASS_RGB),  # a FP of one class and a FN of another
    ):
        rgb[mask] = 0.45 * gray[mask] + 0.55 * np.asarray(color)
    return rgb


def save_overlay(fig: Figure, out: Path | str, title: str, fontsize: int, top: float) -> Path:
    """Title ``fig``, lay its panels side by side (``top``: where they end) and write it to ``out`` as PNG."""
    fig.suptitle(title, fontsize=fontsize)
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=top, wspace=0.03)
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=_DPI)
    return path


def overlay_png(
    image_zyx: NDArray[Any],
    gt_zyx: NDArray[Any],
    pred_zyx: NDArray[Any] | None,
    out: Path,
    title: str,
    spacing: tuple[float, float, float] | None = None,
    slice_index: int | None = None,
    window: tuple[float, float] | None = None,
) -> Path:
    """Write a PNG comparing reference and prediction on the slice with most foreground.

    Args:
        image_zyx: ``(z, y, x)`` image.
        gt_zyx: ``(z, y, x)`` reference label map (0 = background).
        pred_zyx: ``(z, y, x)`` predicted label map, or None to show the reference only.
        out: PNG path (parent folders are created).
        title: figure title (case id, model ...).
        spacing: ``(z, y, x)`` mm; sets the in-plane aspect ratio (default square pixels).
        slice_index: axial slice to show; default :func:`pick_slice`.
        window: ``(center, width)`` intensity window; default robust percentiles.

    Returns:
        ``out``; the image is :data:`OVERLAY_SIZE_PX` pixels.
    """
    image = np.asarray(image_zyx)
    gt = np.asarray(gt_zyx)
    pred = None if pred_zyx is None else np.asarray(pred_zyx)
    for name, arr in (("gt", gt), ("pred", pred)):
        if arr is not None and arr.shape != image.shape:
            raise ValueError(f"overlay {title!r}: {name} shape {arr.shape} != image shape {image.shape}")
    if image.ndim != 3:
        raise ValueError(f"overlay {title!r}: image must be 3D (z, y, x), got shape {image.shape}")
    z = pick_slice(gt, pred) if slice_index is None else int(slice_index)
    if not 0 <= z < image.shape[0]:
        raise ValueError(f"overlay {title!r}: slice_index {z} outside 0..{image.shape[0] - 1}")
    aspect = 1.0 if spacing is None else float(spacing[1]) / float(spacing[2])
    base = window_image(image[z], window)
    gt_s = gt[z]
    pred_s = np.zeros_like(gt_s) if pred is None else pred[z]

    fig = Figure(figsize=(OVERLAY_SIZE_PX[0] / _DPI, OVERLAY_SIZE_PX[1] / _DPI), dpi=_DPI)
    axes = fig.subplots(1, 2)
    axes[0].imshow(base, cmap="gray", vmin=0, vmax=1, aspect=aspect, interpolation="nearest")
    _contours(axes[0], gt_s, _GT_COLOR, "solid")
    if pred is not None:
        _contours(axes[0], pred_s, _PRED_COLOR, "dashed")
    axes[0].set_title("contours", fontsize=9)
    axes[0].legend(
        handles=[
            Line2D([], [], color=_GT_COLOR, lw=1.6, label="reference"),
            Line2D([], [], color=_PRED_COLOR, lw=1.6, ls="--", label="prediction"),
        ],
        loc="lower right",
        fontsize=8,
        framealpha=0.7,
    )
    axes[1].imshow(_error_rgb(gt_s, pred_s, base), aspect=aspect, interpolation="nearest")
    axes[1].set_title("errors", fontsize=9)
    axes[1].legend(
        handles=[
            Patch(color=_TP_RGB, label="TP"),
            Patch(color=_FP_RGB, label="FP"),
            Patch(color=_FN_RGB, label="FN"),
            Patch(color=_WRONG_CLASS_RGB, label="wrong class"),
        ],
        loc="lower right",
        fontsize=8,
        framealpha=0.7,
    )
    for ax in axes:
        ax.set_axis_off()
    return save_overlay(fig, out, f"{title} (slice {z}/{image.shape[0] - 1})", fontsize=11, top=0.88)


def overlay_case_png(
    pair: CasePair,
    out: Path,
    title: str,
    window: tuple[float, float] | None = None,
) -> Path:
    """:func:`overlay_png` for a pair whose reference is a medseg store (image read from its ``"0"``).

    Args:
        pair: the case (``gt_path`` must be a ``.zarr`` store holding the image).
        out: PNG path.
        title: figure title.
        window: ``(center, width)`` intensity window; default robust percentiles.
    """
    if pair.gt_path is None or not Path(pair.gt_path).name.endswith(".zarr"):
        raise ValueError(
            f"case {pair.case_id}: overlay_case_png needs the reference as a medseg .zarr store "
            "holding the image "
            f"(got gt_path={pair.gt_path}); call overlay_png with arrays instead"
        )
    pred, gt, spacing = load_pair(pair)
    image = np.asarray(open_array(Path(pair.gt_path), "0")[...])
    return overlay_png(image, gt, pred, out, title, spacing=spacing, window=window)
