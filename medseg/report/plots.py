"""Box plots of per-case metrics (matplotlib Figure API, Agg; safe in worker threads).

One PNG per metric: for every class (x axis groups) one box per model, over the cases; NaN
(class absent from both masks) is left out. Points are drawn on top so small test sets stay honest.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from medseg.evaluation.summary import Summary

#: Metrics plotted by default and their axis labels.
BOX_METRICS: tuple[tuple[str, str], ...] = (
    ("Dice", "Dice"),
    ("HD95", "HD95 (mm)"),
    ("NSD", "NSD"),
    ("ASSD", "ASSD (mm)"),
    ("IoU", "IoU"),
    ("VolumeDiff_ml", "volume difference (ml)"),
)
_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b")


def metric_values(summary: Summary, metric: str, label: int) -> list[float]:
    """Finite per-case values of ``metric`` for class ``label`` (NaN left out)."""
    out = []
    for case in summary.metric_per_case:
        v = case.metrics.get(label, {}).get(metric, math.nan)
        if not math.isnan(v):
            out.append(float(v))
    return out


def boxplot_png(summaries: Mapping[str, Summary], metric: str, out: Path, ylabel: str | None = None) -> Path:
    """Write a box plot of ``metric`` per class and model to ``out`` (PNG, 900 x 420 px).

    Args:
        summaries: ``{model name: Summary}`` in display order.
        metric: a key of :data:`medseg.evaluation.metrics.METRIC_KEYS`.
        out: PNG path (parent folders are created).
        ylabel: axis label; default the metric name.
    """
    models = list(summaries)
    labels = sorted({lab for s in summaries.values() for lab in s.mean if lab != 0})
    names = {lab: next((s.label_names[lab] for s in summaries.values() if lab in s.label_names), f"class_{lab}")
             for lab in labels}
    fig = Figure(figsize=(9.0, 4.2), dpi=100)
    ax = fig.subplots()
    width = 0.8 / max(1, len(models))
    rng = np.random.default_rng(0)
    for m, model in enumerate(models):
        color = _COLORS[m % len(_COLORS)]
        for c, lab in enumerate(labels):
            values = metric_values(summaries[model], metric, lab)
            pos = c + (m - (len(models) - 1) / 2) * width
            if values:
                ax.boxplot([values], positions=[pos], widths=width * 0.85, patch_artist=True, showfliers=False,
                           boxprops={"facecolor": color, "alpha": 0.35, "edgecolor": color},
                           medianprops={"color": color}, whiskerprops={"color": color}, capprops={"color": color})
                jitter = rng.uniform(-width * 0.2, width * 0.2, len(values))
                ax.scatter(pos + jitter, values, s=10, color=color, zorder=3)
        ax.plot([], [], color=color, lw=6, alpha=0.5, label=model)
    ax.set_xticks(range(len(labels)), [names[lab] for lab in labels])
    ax.set_xlim(-0.6, len(labels) - 0.4)
    ax.set_ylabel(ylabel or metric)
    ax.set_title(f"{ylabel or metric} per case", fontsize=11)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, format="png")
    return out


def boxplots(summaries: Mapping[str, Summary], out_dir: Path,
             metrics: Sequence[tuple[str, str]] = BOX_METRICS) -> list[Path]:
    """One :func:`boxplot_png` per metric, ``out_dir/box_<metric>.png``; metrics without values are skipped."""
    paths = []
    for metric, label in metrics:
        if any(metric_values(s, metric, lab) for s in summaries.values() for lab in s.mean if lab != 0):
            paths.append(boxplot_png(summaries, metric, Path(out_dir) / f"box_{metric}.png", label))
    return paths
