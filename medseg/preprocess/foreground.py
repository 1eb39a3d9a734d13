"""Sampled foreground voxel locations per class, stored with each preprocessed case.

Training oversamples patches centred on foreground (nnU-Net's ``foreground_oversample``); reading a
few thousand coordinates is much cheaper than scanning the label volume for every patch.

Storage (:mod:`medseg.io.case_arrays`): one int32 array ``fg/<class>`` of shape ``(N, 3)`` (``(z, y, x)``
voxel indices in the preprocessed grid, ``N <= max_per_class``, sorted) per class of the plan, empty
``(0, 3)`` when the class is absent; the list of classes is in the store's ``source["fg_classes"]``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
from numpy.typing import NDArray

MAX_PER_CLASS = 1000


def sample_foreground_locations(
    labels: NDArray[Any], classes: Iterable[int], max_per_class: int = MAX_PER_CLASS, seed: int = 0
) -> dict[int, NDArray[np.int32]]:
    """Up to ``max_per_class`` random voxel coordinates of each class.

    Args:
        labels: label map ``(z, y, x)``.
        classes: class values to sample (background 0 is skipped).
        max_per_class: sample size cap per class.
        seed: RNG seed (same seed, same labels -> same samples).

    Returns:
        ``{class: int32 array (N, 3)}`` of ``(z, y, x)`` indices, sorted in C order.
    """
    rng = np.random.default_rng(seed)
    if labels.ndim == 0 or labels.size == 0:
        return {cls: np.zeros((0, 3), np.int32) for cls in sorted({int(c) for c in classes} - {0})}
    # work in blocks of leading-axis rows: never a full-size index array (a large organ in a
    # 1000-slice CT has tens of millions of voxels); same samples as a whole-volume flatnonzero
    rows_per_block = max(1, (1 << 22) // max(1, int(np.prod(labels.shape[1:]))))
    starts = list(range(0, labels.shape[0], rows_per_block))
    row_size = int(np.prod(labels.shape[1:]))
    out: dict[int, NDArray[np.int32]] = {}
    for cls in sorted({int(c) for c in classes} - {0}):
        counts = [int(np.count_nonzero(labels[a : a + rows_per_block] == cls)) for a in starts]
        total = sum(counts)
        ranks = np.sort(rng.choice(total, size=max_per_class, replace=False)) if total > max_per_class else None
        picked: list[NDArray[np.intp]] = []
        seen = 0
        for a, n in zip(starts, counts, strict=True):
            if n == 0:
                continue
            local = None if ranks is None else ranks[(ranks >= seen) & (ranks < seen + n)] - seen
            if local is None or len(local):
                hits = np.flatnonzero(labels[a : a + rows_per_block] == cls)
                picked.append((hits if local is None else hits[local]) + a * row_size)
            seen += n
        idx = np.concatenate(picked) if picked else np.zeros(0, np.intp)
        coords = np.stack(np.unravel_index(idx, labels.shape), axis=1) if len(idx) else np.zeros((0, 3))
        out[cls] = coords.astype(np.int32)
    return out
