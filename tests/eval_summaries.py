"""Evaluation summaries of shifted box predictions (for the metrics table, plot, delta and report tests)."""

from __future__ import annotations

import numpy as np

from medseg.evaluation.summary import CasePair, Summary, evaluate_cases

NAMES = {1: "liver", 2: "tumor"}


def shifted_summary(shifts: list[int], version: str, tumor: bool = True, ids: list[str] | None = None) -> Summary:
    pairs = []
    for i, s in enumerate(shifts):
        gt = np.zeros((6, 24, 24), np.uint8)
        gt[1:5, 4:20, 4:20] = 1
        gt[2:4, 8:12, 8:12] = 2
        pred = np.zeros_like(gt)
        pred[1:5, 4 + s : 20, 4:20] = 1
        if tumor:
            pred[2:4, 8:12, 8:12] = 2
        pairs.append(CasePair((ids or [f"c{j}" for j in range(len(shifts))])[i], pred=pred, gt=gt, spacing=(2, 1, 1)))
    return evaluate_cases(pairs, NAMES, model={"family": "cnn", "version": version})
