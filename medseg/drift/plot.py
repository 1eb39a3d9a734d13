"""The drift plot: new cases over the training distribution of the key features (matplotlib Figure API, Agg).

One panel per feature (spacing and shape per axis, intensity p1/p50/p99 of the first channel): the
training cases as grey dots, the training range dark and the allowed range light, the new cases on their
own row, red where that feature flags them.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from medseg.drift.report import DriftReport
from medseg.drift.rules import numeric_features
from medseg.io.json_file import atomic_path

#: features plotted (the intensity ones of the first channel)
PLOTTED = ("spacing z", "spacing y", "spacing x", "shape z", "shape y", "shape x",
           "intensity p01", "intensity p50", "intensity p99")


def drift_png(report: DriftReport, out: Path) -> Path:
    """Write the drift plot of ``report`` to ``out`` (PNG, 1050 x 720 px; written atomically)."""
    ranges = {r.feature: r for r in report.reference.numeric}
    names = [f for f in PLOTTED if f in ranges]
    fig = Figure(figsize=(10.5, 7.2), dpi=100)
    axes = fig.subplots(3, 3, squeeze=False).ravel()
    rng = np.random.default_rng(0)
    checked = [c for c in report.cases if c.appearance is not None]
    for ax, feature in zip(axes, names, strict=False):
        r = ranges[feature]
        ax.axvspan(r.allowed_low, r.allowed_high, color="#2ca02c", alpha=0.12, lw=0)
        ax.axvspan(r.low, r.high, color="#2ca02c", alpha=0.25, lw=0)
        ax.scatter(r.training, rng.uniform(-0.15, 0.15, len(r.training)), s=14, color="#7f7f7f", zorder=3)
        for c in checked:
            assert c.appearance is not None
            value = numeric_features(c.appearance).get(feature)
            if value is None:
                continue
            bad = any(f.feature == feature for f in c.flags)
            ax.scatter([value.value], [1 + rng.uniform(-0.15, 0.15)], s=40 if bad else 18,
                       marker="X" if bad else "o", color="#d62728" if bad else "#1f77b4", zorder=4)
        ax.set_yticks([0, 1], ["training", "new"])
        ax.set_ylim(-0.6, 1.6)
        ax.set_title(f"{feature}{f' ({r.unit})' if r.unit else ''}", fontsize=9)
        ax.tick_params(labelsize=8)
    for ax in axes[len(names):]:
        ax.set_visible(False)
    fig.suptitle(f"{report.headline()}; red X: flagged by that feature", fontsize=9)
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png")
    return out
