"""Drift rules: is a new case's appearance inside what the training cases showed?

Made for small reference sets (a demo has 8-12 training cases, a site's first model a few dozen), so no
distribution is fitted: each numeric feature has the training **range** (min-max), widened by a margin,
and each categorical feature the set of values the training cases had.

* grid (spacing and shape per axis, positive): allowed ``[min / f, max * f]``, ``f = geometry_factor``;
* intensity (p1, p50, p99, mean, std per channel, raw scanner units): allowed
  ``[min - m * D, max + m * D]``, ``m = intensity_margin``, ``D`` = the training cases' median
  ``p99 - p1`` of that channel (the typical dynamic range: a shift of a quarter of it is a different
  scale or offset, not patient variation);
* categories (modality, manufacturer, model, protocol): a value no training case had. An unknown
  value ('' : a NIfTI case, a store ingested before medseg read the attribute) is not compared, and a
  feature no training case recorded is not compared either (the report's notes say so).

Every flag carries a sentence a data engineer can act on, e.g.
``spacing z 10.00 mm outside training 2.50 to 5.00 mm (allowed 1.67 to 7.50)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum
from typing import NamedTuple

import numpy as np
from pydantic import BaseModel, Field

from medseg.config import DriftCategory, OpsConfig
from medseg.preprocess.appearance import CaseAppearance

AXES = ("z", "y", "x")
INTENSITY_STATS = ("p01", "p50", "p99", "mean", "std")


class FeatureKind(StrEnum):
    """How a numeric feature's allowed range is widened."""

    GEOMETRY = "geometry"  # positive, multiplicative margin
    INTENSITY = "intensity"  # additive margin, a share of the dynamic range


class DriftRules(BaseModel):
    """The margins of the drift rules (``ops.drift_*`` in the config)."""

    geometry_factor: float = Field(1.5, gt=1, description="spacing/shape may be this factor outside the range")
    intensity_margin: float = Field(0.25, ge=0, description="share of the training dynamic range (p99 - p1)")
    categories: list[DriftCategory] = Field(default_factory=lambda: list(DriftCategory))

    @classmethod
    def from_ops(cls, ops: OpsConfig) -> DriftRules:
        return cls(geometry_factor=ops.drift_geometry_factor, intensity_margin=ops.drift_intensity_margin,
                   categories=list(ops.drift_categories))


class FeatureRange(BaseModel):
    """A numeric feature over the training cases and the range a new case may fall in."""

    feature: str = Field(description="e.g. 'spacing z', 'intensity p99' or 'intensity p99 [T2]'")
    kind: FeatureKind
    unit: str = Field(description="'mm', 'voxels' or '' (raw scanner units)")
    low: float = Field(description="training minimum")
    high: float = Field(description="training maximum")
    allowed_low: float
    allowed_high: float
    training: list[float] = Field(description="every training case's value (the plot draws them)")


class Reference(BaseModel):
    """What the training cases showed: numeric ranges and the categorical values seen."""

    cases: list[str] = Field(description="training case ids the reference was made of")
    channel_names: list[str] = Field(default_factory=list, description="multi-channel training data: its channels")
    numeric: list[FeatureRange]
    categories: dict[str, list[str]] = Field(description="feature -> values seen (sorted; '' left out)")


class DriftFlag(BaseModel):
    """One reason a case is out of distribution."""

    feature: str
    value: str = Field(description="the case's value, as shown")
    reason: str = Field(description="a readable sentence")


def _channel_label(names: Sequence[str], k: int) -> str:
    return f" [{names[k]}]" if names else ("" if k == 0 else f" [channel {k}]")


class Feature(NamedTuple):
    """One numeric feature of a case."""

    value: float
    kind: FeatureKind
    unit: str
    channel: int  # intensity features: the channel; 0 for the grid


def numeric_features(a: CaseAppearance) -> dict[str, Feature]:
    """``{name: feature}`` of one case: spacing and shape per axis, then the intensity statistics per channel."""
    out: dict[str, Feature] = {}
    for axis, s, n in zip(AXES, a.spacing, a.shape, strict=True):
        out[f"spacing {axis}"] = Feature(float(s), FeatureKind.GEOMETRY, "mm", 0)
        out[f"shape {axis}"] = Feature(float(n), FeatureKind.GEOMETRY, "voxels", 0)
    for k, stats in enumerate(a.intensity):
        for name in INTENSITY_STATS:
            out[f"intensity {name}{_channel_label(a.channel_names, k)}"] = Feature(
                float(getattr(stats, name)), FeatureKind.INTENSITY, "", k)
    return out


def category_value(a: CaseAppearance, category: DriftCategory) -> str:
    return str(getattr(a, category.value) or "")


def build_reference(training: Sequence[CaseAppearance], rules: DriftRules) -> Reference:
    """The reference ranges of ``training`` (at least one case, every one with the same channels).

    Raises:
        ValueError: no training case, or training cases with different channels.
    """
    if not training:
        raise ValueError("no training case to compare with: the drift reference needs at least one")
    channel_sets = {tuple(a.channel_names) for a in training}
    if len(channel_sets) > 1:
        raise ValueError(f"the training cases have different channels {sorted(channel_sets)}; re-run preprocess")
    per_case = [numeric_features(a) for a in training]
    common = [f for f in per_case[0] if all(f in p for p in per_case)]
    ranges = []
    for feature in common:
        values = [p[feature].value for p in per_case]
        first = per_case[0][feature]
        lo, hi = min(values), max(values)
        if first.kind is FeatureKind.GEOMETRY:
            a_lo, a_hi = lo / rules.geometry_factor, hi * rules.geometry_factor
        else:
            pad = rules.intensity_margin * _dynamic_range(training, first.channel)
            a_lo, a_hi = lo - pad, hi + pad
        ranges.append(FeatureRange(feature=feature, kind=first.kind, unit=first.unit, low=lo, high=hi,
                                   allowed_low=a_lo, allowed_high=a_hi, training=values))
    seen = {c.value: sorted({category_value(a, c) for a in training} - {""}) for c in DriftCategory}
    return Reference(cases=[a.case_id for a in training], channel_names=list(training[0].channel_names),
                     numeric=ranges, categories=seen)


def _dynamic_range(training: Sequence[CaseAppearance], channel: int) -> float:
    """Median ``p99 - p1`` of channel ``channel`` over the training cases (1.0 for constant images)."""
    spans = [a.intensity[channel].p99 - a.intensity[channel].p01 for a in training if channel < len(a.intensity)]
    span = float(np.median(spans)) if spans else 0.0
    return span if span > 0 else 1.0


def _fmt(value: float, unit: str) -> str:
    if unit == "voxels":
        return f"{value:.0f}"
    if unit == "mm":
        return f"{value:.2f}"
    return f"{value:.0f}" if abs(value) >= 100 else f"{value:.3g}"


def check_case(a: CaseAppearance, reference: Reference, rules: DriftRules) -> list[DriftFlag]:
    """The reasons ``a`` is out of distribution (empty: inside every rule)."""
    flags: list[DriftFlag] = []
    if list(a.channel_names) != reference.channel_names:
        flags.append(DriftFlag(feature="channels", value=", ".join(a.channel_names) or "one channel",
                               reason=f"channels {a.channel_names or ['one channel']} differ from training "
                                      f"{reference.channel_names or ['one channel']}"))
    values = numeric_features(a)
    other_channels = bool(flags)
    for r in reference.numeric:
        if r.feature not in values or (r.kind is FeatureKind.INTENSITY and other_channels):
            continue  # intensities of other channels are not comparable
        v = values[r.feature].value
        if not r.allowed_low <= v <= r.allowed_high:
            unit = f" {r.unit}" if r.unit == "mm" else ""
            flags.append(DriftFlag(
                feature=r.feature, value=_fmt(v, r.unit),
                reason=f"{r.feature} {_fmt(v, r.unit)}{unit} outside training {_fmt(r.low, r.unit)} to "
                       f"{_fmt(r.high, r.unit)}{unit} (allowed {_fmt(r.allowed_low, r.unit)} to "
                       f"{_fmt(r.allowed_high, r.unit)})"))
    for c in rules.categories:
        text, seen = category_value(a, c), reference.categories.get(c.value, [])
        if text and seen and text not in seen:
            shown = ", ".join(repr(s) for s in seen[:4]) + (f" and {len(seen) - 4} more" if len(seen) > 4 else "")
            flags.append(DriftFlag(feature=c.value, value=text, reason=f"{c.value} {text!r} not in training ({shown})"))
    return flags
