"""Lesion-wise (connected-component) detection metrics: how many lesions were found and missed.

For one class, the reference and the predicted masks are split into connected components
(26-connectivity in 3D: voxels sharing a face, an edge or a corner belong to one lesion). Matching
is by overlap, as in the BraTS 2023 lesion-wise evaluation:

* a **reference lesion** is *detected* (lesion TP) when at least one predicted component overlaps it
  by one voxel or more, else it is *missed* (lesion FN);
* a **predicted component** that overlaps no reference lesion is a *false alarm* (lesion FP);
* the **Dice of a reference lesion** is computed between the lesion and the union of the predicted
  components that overlap it (0 for a missed lesion);
* **Lesion_Dice** (BraTS 2023) is ``sum(Dice of reference lesions) / (n reference lesions + lesion FP)``:
  missed lesions and false alarms both count as 0.

``Lesion_Recall = TP / n_ref_lesions``, ``Lesion_Precision = (predicted components that overlap a
reference lesion) / n_pred_lesions``, ``Lesion_F1`` their harmonic mean. Empty rules follow
:mod:`medseg.evaluation.metrics`: with neither reference nor predicted lesions every value is NaN
(the case does not count); when only one side has lesions the undefined ratio is the worst value, 0.

BraTS additionally dilates the reference and drops components below a size; both are left out here
(``min_voxels`` drops small components of both masks when set).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy import ndimage

#: Keys added per class by :func:`lesion_metrics`.
LESION_KEYS: tuple[str, ...] = (
    "Lesion_TP", "Lesion_FP", "Lesion_FN", "Lesion_Recall", "Lesion_Precision", "Lesion_F1", "Lesion_Dice",
)


def components(mask: NDArray[np.bool_], min_voxels: int = 0) -> tuple[NDArray[np.int32], int]:
    """Connected components (26-connectivity) of a ``(z, y, x)`` mask: ``(labels, count)``, labels 1..count.

    Components smaller than ``min_voxels`` are dropped (and the rest renumbered).
    """
    labels, count = ndimage.label(mask, structure=np.ones((3,) * mask.ndim, dtype=bool))
    labels = labels.astype(np.int32, copy=False)
    if min_voxels > 1 and count:
        sizes = np.bincount(labels.ravel(), minlength=count + 1)
        keep = sizes >= min_voxels
        keep[0] = False
        remap = np.zeros(count + 1, dtype=np.int32)
        remap[keep] = np.arange(1, int(keep.sum()) + 1, dtype=np.int32)
        labels, count = remap[labels], int(keep.sum())
    return labels, int(count)


def _no_lesions() -> dict[str, float]:
    """Neither mask has a lesion: counts 0, every ratio NaN (the case does not count in the means)."""
    return dict.fromkeys(LESION_KEYS[:3], 0.0) | dict.fromkeys(LESION_KEYS[3:], math.nan)


def _crop(p: NDArray[np.bool_], g: NDArray[np.bool_]) -> tuple[NDArray[np.bool_], NDArray[np.bool_]]:
    """Both masks cropped to the bounding box of ``p | g`` (components and overlaps are unchanged)."""
    either = p | g
    box = []
    for axis in range(either.ndim):
        hits = np.flatnonzero(either.any(axis=tuple(a for a in range(either.ndim) if a != axis)))
        box.append(slice(int(hits[0]), int(hits[-1]) + 1))
    return p[tuple(box)], g[tuple(box)]


def _overlaps(ref: NDArray[np.int32], n_ref: int, out: NDArray[np.int32], n_pred: int) -> NDArray[np.int64]:
    """Voxels shared by reference lesion ``i`` and predicted component ``j``, ``(n_ref + 1, n_pred + 1)``."""
    both = (ref > 0) & (out > 0)
    codes = ref[both].astype(np.int64) * (n_pred + 1) + out[both]
    size = (n_ref + 1) * (n_pred + 1)
    if size <= 1 << 22:
        return np.bincount(codes, minlength=size).reshape(n_ref + 1, n_pred + 1)
    matrix = np.zeros((n_ref + 1, n_pred + 1), dtype=np.int64)  # many components: only the pairs that touch
    pairs, counts = np.unique(codes, return_counts=True)
    matrix[pairs // (n_pred + 1), pairs % (n_pred + 1)] = counts
    return matrix


def lesion_metrics(pred: NDArray[Any], gt: NDArray[Any], min_voxels: int = 0) -> dict[str, float]:
    """Lesion-wise detection metrics of two same-shape masks (see the module docstring)."""
    p, g = np.asarray(pred) != 0, np.asarray(gt) != 0
    if p.shape != g.shape:
        raise ValueError(f"pred shape {p.shape} != gt shape {g.shape}: resample the prediction to the reference grid")
    if not (p.any() or g.any()):
        return _no_lesions()
    p, g = _crop(p, g)
    ref, n_ref = components(g, min_voxels)
    out, n_pred = components(p, min_voxels)
    overlap = _overlaps(ref, n_ref, out, n_pred)[1:, 1:]  # (reference lesion, predicted component)
    ref_sizes = np.bincount(ref.ravel(), minlength=n_ref + 1)[1:]
    pred_sizes = np.bincount(out.ravel(), minlength=n_pred + 1)[1:]
    touches = overlap > 0
    detected = touches.any(axis=1)
    hit = touches.any(axis=0)
    # Dice of each reference lesion with the union of the predicted components that overlap it (0 if missed)
    matched_size = touches.astype(np.int64) @ pred_sizes
    lesion_dice = np.where(detected, 2.0 * overlap.sum(axis=1) / np.maximum(ref_sizes + matched_size, 1), 0.0)
    tp, fn, fp = int(detected.sum()), int((~detected).sum()), int((~hit).sum())
    if n_ref == 0 and n_pred == 0:  # every component smaller than min_voxels
        return _no_lesions()
    recall = tp / n_ref if n_ref else 0.0  # predicted lesions without any reference lesion: worst value
    precision = int(hit.sum()) / n_pred if n_pred else 0.0  # reference lesions and no prediction: worst value
    f1 = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    return {
        "Lesion_TP": float(tp),
        "Lesion_FP": float(fp),
        "Lesion_FN": float(fn),
        "Lesion_Recall": recall,
        "Lesion_Precision": precision,
        "Lesion_F1": f1,
        "Lesion_Dice": float(lesion_dice.sum()) / (n_ref + fp),
    }
