"""How sure the model was of its predicted foreground: a histogram of the winning class's probability.

Computed at inference from the class scores that :func:`medseg.inference.predict.predict_volume`
streams (one z-slab at a time, on the preprocessed grid: the network's own grid, before the labels are
interpolated onto the native grid). For every voxel whose arg-max class is not background, the softmax
probability of that class is counted in one of :data:`BINS` equal bins over ``[0, 1]``. The share of
foreground voxels below a threshold (``qa.low_confidence_below``, a multiple of the bin width) is then a
sum of bins, so a site can change the threshold without predicting again.

The probabilities are those the label comes from: a single model's softmax of its blended logits
(averaged over the mirrored copies when ``infer.mirror_tta``: flips that disagree flatten it), an
ensemble's mean softmax over its members.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from pydantic import BaseModel, Field

from medseg.config import CONFIDENCE_BIN
from medseg.io.volume_store import read_meta

#: histogram bins over [0, 1] (bin k holds probabilities in [k, k + 1) * CONFIDENCE_BIN; 1.0 in the last)
BINS = round(1 / CONFIDENCE_BIN)
#: the prediction store's ``source`` attribute that holds the record
SOURCE_KEY = "confidence"
CONFIDENCE_SCHEMA_VERSION = 1


class Confidence(BaseModel):
    """Confidence of one case's predicted foreground (stored in the prediction store's ``source``)."""

    schema_version: int = CONFIDENCE_SCHEMA_VERSION
    grid: str = Field("preprocessed", description="the grid the voxels were counted on")
    foreground_voxels: int = Field(description="voxels whose arg-max class is not background")
    histogram: list[int] = Field(description=f"{BINS} counts of the winning probability of those voxels, "
                                             f"bins of {CONFIDENCE_BIN} over [0, 1]")

    def share_below(self, threshold: float) -> float:
        """Share of the foreground voxels whose winning probability is below ``threshold`` (0 without foreground).

        ``threshold`` is rounded to the nearest bin edge (:data:`~medseg.config.CONFIDENCE_BIN`).
        """
        if self.foreground_voxels == 0:
            return 0.0
        edge = min(BINS, max(0, round(threshold / CONFIDENCE_BIN)))
        return float(sum(self.histogram[:edge])) / self.foreground_voxels


class ConfidenceTally:
    """Accumulates :class:`Confidence` over the score slabs of one case.

    Args:
        probabilities: True when the slabs hold probabilities (an ensemble's mean softmax), False for logits.
    """

    def __init__(self, probabilities: bool) -> None:
        self.probabilities = probabilities
        self.counts = np.zeros(BINS, dtype=np.int64)

    def feed(self, scores: NDArray[np.float32]) -> None:
        """Count one slab of class scores ``(C, n, y, x)`` float32 (C >= 2; class 0 = background)."""
        t = torch.from_numpy(np.ascontiguousarray(scores, dtype=np.float32))
        probs = t if self.probabilities else t.softmax(dim=0)
        top, cls = probs.max(dim=0)
        fg = top[cls != 0].numpy()
        if fg.size:
            bins = np.minimum((fg / CONFIDENCE_BIN).astype(np.int64), BINS - 1)
            self.counts += np.bincount(bins, minlength=BINS)

    def result(self) -> Confidence:
        """The record of the slabs fed so far."""
        return Confidence(foreground_voxels=int(self.counts.sum()), histogram=[int(c) for c in self.counts])


def confidence_source(record: Confidence) -> dict[str, Any]:
    """``{SOURCE_KEY: record}`` for the prediction store's ``source`` attributes."""
    return {SOURCE_KEY: record.model_dump(mode="json")}


def read_confidence(store: Path) -> Confidence | None:
    """The record of a completed prediction store; None for stores written before medseg recorded it.

    Raises:
        IncompleteStoreError: ``store`` is not a completed store.
        ValueError: the record is malformed or of another schema version (the message names the store).
    """
    value = (read_meta(store).get("source") or {}).get(SOURCE_KEY)
    if value is None:
        return None
    if not isinstance(value, dict) or value.get("schema_version") != CONFIDENCE_SCHEMA_VERSION:
        found = value.get("schema_version") if isinstance(value, dict) else type(value).__name__
        raise ValueError(f"{store}: confidence record of schema {found!r} (this medseg reads "
                         f"{CONFIDENCE_SCHEMA_VERSION}); predict the case again")
    return Confidence.model_validate(value)
