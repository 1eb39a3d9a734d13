"""Segmentation metrics (physical units) and ``summary.json`` aggregation."""

from medseg.evaluation.metrics import (
    METRIC_KEYS,
    assd,
    case_metrics,
    dice,
    hd95,
    iou,
    surface_dice,
    volume_difference_ml,
)
from medseg.evaluation.summary import (
    CasePair,
    CaseResult,
    Summary,
    evaluate_case,
    evaluate_cases,
    load_summary,
    summarize,
    write_summary,
)

__all__ = [
    "METRIC_KEYS",
    "CasePair",
    "CaseResult",
    "Summary",
    "assd",
    "case_metrics",
    "dice",
    "evaluate_case",
    "evaluate_cases",
    "hd95",
    "iou",
    "load_summary",
    "summarize",
    "surface_dice",
    "volume_difference_ml",
    "write_summary",
]
