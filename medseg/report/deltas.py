"""Model comparisons for the report: metric deltas between two summaries, best/worst cases, earlier reports.

Deltas are ``a - b`` of the per-class means. When both summaries share cases, the means are taken
over the shared cases only (a paired comparison: the same cases for both models); otherwise over
each model's own cases (``paired = False``). Higher is better for Dice/IoU/NSD, lower for
HD95/ASSD; ``better`` names the model that wins each row.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medseg.evaluation.summary import Summary, load_summary

#: Metrics of the delta tables and whether higher is better.
DELTA_METRICS: tuple[tuple[str, bool], ...] = (("Dice", True), ("IoU", True), ("NSD", True), ("HD95", False),
                                               ("ASSD", False))


@dataclass
class DeltaTable:
    """``a`` minus ``b`` per class and metric.

    Attributes:
        title: e.g. "cnn vs gan".
        a: name of the first model; b: name of the second.
        paired: True when the means are over the cases both summaries share.
        n_cases: cases the means are over (shared cases when paired).
        rows: ``{"class", "metric", "a", "b", "delta", "better"}`` (NaN where undefined).
    """

    title: str
    a: str
    b: str
    paired: bool
    n_cases: int
    rows: list[dict[str, Any]] = field(default_factory=list)


def _mean(summary: Summary, label: int, metric: str, cases: set[str] | None) -> float:
    values = [
        c.metrics.get(label, {}).get(metric, math.nan)
        for c in summary.metric_per_case
        if cases is None or c.case_id in cases
    ]
    finite = [v for v in values if not math.isnan(v)]
    return float(np.mean(finite)) if finite else math.nan


def delta_table(a: Summary, b: Summary, a_name: str, b_name: str, title: str | None = None) -> DeltaTable:
    """Per-class (and foreground-mean) metric deltas ``a - b`` (see the module docstring)."""
    shared = {c.case_id for c in a.metric_per_case} & {c.case_id for c in b.metric_per_case}
    cases = shared or None
    labels = sorted((set(a.mean) | set(b.mean)) - {0})
    table = DeltaTable(title=title or f"{a_name} vs {b_name}", a=a_name, b=b_name, paired=bool(shared),
                       n_cases=len(shared) if shared else len(a.metric_per_case))
    for metric, higher in DELTA_METRICS:
        per_class: list[tuple[float, float]] = []
        for lab in labels:
            va, vb = _mean(a, lab, metric, cases), _mean(b, lab, metric, cases)
            per_class.append((va, vb))
            name = a.label_names.get(lab) or b.label_names.get(lab) or f"class_{lab}"
            table.rows.append(_row(name, metric, va, vb, higher, a_name, b_name))
        fa = [x for x, _ in per_class if not math.isnan(x)]
        fb = [y for _, y in per_class if not math.isnan(y)]
        table.rows.append(_row("foreground mean", metric, float(np.mean(fa)) if fa else math.nan,
                               float(np.mean(fb)) if fb else math.nan, higher, a_name, b_name))
    return table


def _row(name: str, metric: str, va: float, vb: float, higher: bool, a_name: str, b_name: str) -> dict[str, Any]:
    delta = va - vb if not (math.isnan(va) or math.isnan(vb)) else math.nan
    better = "" if math.isnan(delta) or delta == 0 else (a_name if (delta > 0) == higher else b_name)
    return {"class": name, "metric": metric, "a": va, "b": vb, "delta": delta, "better": better}


def case_scores(summary: Summary) -> dict[str, float]:
    """Foreground-mean Dice of every case (NaN classes left out; NaN when no class is defined)."""
    out = {}
    for c in summary.metric_per_case:
        vals = [m["Dice"] for lab, m in c.metrics.items() if lab != 0 and not math.isnan(m.get("Dice", math.nan))]
        out[c.case_id] = float(np.mean(vals)) if vals else math.nan
    return out


def best_and_worst(summary: Summary) -> list[str]:
    """Case ids of the best and the worst case by foreground-mean Dice (one id when they coincide)."""
    scores = {k: v for k, v in case_scores(summary).items() if not math.isnan(v)}
    if not scores:
        return [summary.metric_per_case[0].case_id] if summary.metric_per_case else []
    best = max(scores, key=lambda k: (scores[k], k))
    worst = min(scores, key=lambda k: (scores[k], k))
    return [best] if best == worst else [best, worst]


def previous_summary(reports_dir: Path, family: str, current_version: str,
                     exclude_run: str | None = None) -> tuple[Path, Summary] | None:
    """The newest earlier ``reports/<run>/<family>/summary.json`` of another model version, if any.

    Used to compare a new champion with the one before it. Runs are ordered by the summary file's
    modification time; unreadable summaries are ignored.
    """
    candidates = []
    for path in Path(reports_dir).glob(f"*/{family}/summary.json"):
        if exclude_run is not None and path.parent.parent.name == exclude_run:
            continue
        try:
            version = json.loads(path.read_text()).get("model", {}).get("version")
        except (OSError, ValueError):
            continue
        if version and version != current_version:
            candidates.append((path.stat().st_mtime, path))
    for _, path in sorted(candidates, reverse=True):
        try:
            return path, load_summary(path)
        except (OSError, ValueError):
            continue
    return None
