"""Evaluate predictions against references and write ``summary.json``.

``summary.json`` is a superset of nnU-Net v2's format (same keys for the shared parts)::

    {
      "metric_per_case": [
        {"reference_file": "...", "prediction_file": "...", "case_id": "c1", "spacing": [z, y, x],
         "metrics": {"1": {"Dice": .., "IoU": .., "HD95": .., "ASSD": .., "NSD": .., "VolumeDiff_ml": ..,
                           "TP": .., "FP": .., "FN": .., "TN": .., "n_pred": .., "n_ref": ..}}}
      ],
      "mean": {"1": {<metric>: mean over cases, NaN ignored}},
      "foreground_mean": {<metric>: mean over the classes of "mean", NaN ignored},
      "label_names": {"1": "spleen"},
      "model": {...free-form: family, version, checkpoint...},
      "nsd_tolerance_mm": 2.0, "n_cases": 3, "schema_version": 1
    }

Class keys are strings as in nnU-Net. NaN (e.g. Dice of a class absent from both masks, see
:mod:`medseg.evaluation.metrics`) is written as JSON ``null`` so the file is strict RFC 8259 JSON
(nnU-Net writes the non-standard ``NaN`` token); :func:`load_summary` turns ``null`` back into NaN.
Differences from nnU-Net: ``foreground_mean`` ignores NaN class means (nnU-Net's ``np.mean`` would
propagate them) and the extra metrics/keys above.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from medseg.evaluation.metrics import METRIC_KEYS, case_metrics
from medseg.geometry import Geometry
from medseg.io.case_arrays import GT_LABEL, label_array_name
from medseg.io.json_file import SCHEMA_FIELD, write_json
from medseg.io.nifti import read_nifti
from medseg.io.volume_store import open_array, read_meta

SUMMARY_SCHEMA_VERSION = 1


@dataclass(frozen=True)
class CasePair:
    """One prediction/reference pair, given as stores/files, as arrays, or mixed.

    Paths may be medseg Zarr stores (label arrays ``labels/<pred_label>/0`` and
    ``labels/<gt_label>/0``) or NIfTI files (``.nii``/``.nii.gz``, array transposed to ``(z, y, x)``).
    Arrays are ``(z, y, x)`` uint8 label maps. The spacing comes from ``spacing`` when given, else
    from the reference's geometry, else from the prediction's.
    """

    case_id: str
    pred_path: Path | None = None
    gt_path: Path | None = None
    pred: NDArray[Any] | None = None
    gt: NDArray[Any] | None = None
    spacing: tuple[float, float, float] | None = None
    pred_label: str = "pred"
    gt_label: str = GT_LABEL

    def __post_init__(self) -> None:
        if self.pred is None and self.pred_path is None:
            raise ValueError(f"case {self.case_id}: CasePair needs pred (array) or pred_path")
        if self.gt is None and self.gt_path is None:
            raise ValueError(f"case {self.case_id}: CasePair needs gt (array) or gt_path")


@dataclass
class CaseResult:
    """Metrics of one case: ``metrics[label][metric]``."""

    case_id: str
    reference_file: str
    prediction_file: str
    spacing: tuple[float, float, float]
    metrics: dict[int, dict[str, float]]


@dataclass
class Summary:
    """Per-case metrics plus their means (see the module docstring for the JSON form)."""

    metric_per_case: list[CaseResult]
    mean: dict[int, dict[str, float]]
    foreground_mean: dict[str, float]
    label_names: dict[int, str]
    model: dict[str, Any] = field(default_factory=dict)
    nsd_tolerance_mm: float = 2.0

    def to_json_dict(self) -> dict[str, Any]:
        """JSON-ready dict (string class keys, NaN -> None)."""
        return {
            SCHEMA_FIELD: SUMMARY_SCHEMA_VERSION,
            "n_cases": len(self.metric_per_case),
            "nsd_tolerance_mm": self.nsd_tolerance_mm,
            "metric_per_case": [
                {
                    "case_id": c.case_id,
                    "reference_file": c.reference_file,
                    "prediction_file": c.prediction_file,
                    "spacing": list(c.spacing),
                    "metrics": {str(k): _clean(v) for k, v in sorted(c.metrics.items())},
                }
                for c in self.metric_per_case
            ],
            "mean": {str(k): _clean(v) for k, v in sorted(self.mean.items())},
            "foreground_mean": _clean(self.foreground_mean),
            "label_names": {str(k): v for k, v in sorted(self.label_names.items())},
            "model": self.model,
        }

    @classmethod
    def from_json_dict(cls, data: Mapping[str, Any]) -> Summary:
        """Inverse of :meth:`to_json_dict` (also reads nnU-Net summaries: missing keys get defaults)."""
        cases = [
            CaseResult(
                case_id=str(c.get("case_id", Path(str(c.get("reference_file", "?"))).name)),
                reference_file=str(c.get("reference_file", "")),
                prediction_file=str(c.get("prediction_file", "")),
                spacing=tuple(float(s) for s in c.get("spacing", (math.nan,) * 3)),  # type: ignore[arg-type]
                metrics={int(k): _unclean(v) for k, v in c["metrics"].items()},
            )
            for c in data.get("metric_per_case", [])
        ]
        mean = {int(k): _unclean(v) for k, v in data.get("mean", {}).items()}
        return cls(
            metric_per_case=cases,
            mean=mean,
            foreground_mean=_unclean(data.get("foreground_mean", {})),
            label_names={int(k): str(v) for k, v in data.get("label_names", {}).items()}
            or {k: f"class_{k}" for k in mean},
            model=dict(data.get("model", {})),
            nsd_tolerance_mm=float(data.get("nsd_tolerance_mm", math.nan)),
        )


def _clean(metrics: Mapping[str, float]) -> dict[str, float | None]:
    return {k: (None if v is None or not math.isfinite(float(v)) else float(v)) for k, v in metrics.items()}


def _unclean(metrics: Mapping[str, float | None]) -> dict[str, float]:
    return {k: (math.nan if v is None else float(v)) for k, v in metrics.items()}


def _nanmean(values: Sequence[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return float(np.mean(finite)) if finite else math.nan


def _is_nifti(path: Path) -> bool:
    return path.name.endswith((".nii", ".nii.gz"))


def _read_label(path: Path, label: str) -> tuple[NDArray[Any], Geometry]:
    """Read a ``(z, y, x)`` label map and its geometry from a medseg store or a NIfTI file."""
    path = Path(path)
    if _is_nifti(path):
        return read_nifti(path)
    if not path.exists():
        raise FileNotFoundError(
            f"{path}: prediction/reference store not found (run the producing stage first)"
        )
    meta = read_meta(path)
    name = label_array_name(label)
    try:
        arr = open_array(path, name)
    except KeyError as exc:
        raise KeyError(
            f"{path} has no label array {name!r}; pass CasePair(pred_label=/gt_label=) with the right name"
        ) from exc
    return np.asarray(arr[...]), Geometry.from_dict(meta["geometry"])


def load_pair(pair: CasePair) -> tuple[NDArray[Any], NDArray[Any], tuple[float, float, float]]:
    """Return ``(pred, gt, spacing)`` of a pair: ``(z, y, x)`` label maps on the same grid, spacing in mm."""
    pred_geo: Geometry | None = None
    gt_geo: Geometry | None = None
    if pair.pred is not None:
        pred = np.asarray(pair.pred)
    else:
        assert pair.pred_path is not None
        pred, pred_geo = _read_label(pair.pred_path, pair.pred_label)
    if pair.gt is not None:
        gt = np.asarray(pair.gt)
    else:
        assert pair.gt_path is not None
        gt, gt_geo = _read_label(pair.gt_path, pair.gt_label)
    if pred.shape != gt.shape:
        raise ValueError(
            f"case {pair.case_id}: prediction shape {pred.shape} ({pair.pred_path or 'array'}) != "
            f"reference shape {gt.shape} ({pair.gt_path or 'array'}); "
            "predictions must be resampled to the reference grid"
        )
    if (
        pred_geo is not None
        and gt_geo is not None
        and not np.allclose(pred_geo.spacing, gt_geo.spacing, rtol=1e-3, atol=1e-4)
    ):
        raise ValueError(
            f"case {pair.case_id}: prediction spacing {pred_geo.spacing} != reference spacing "
            f"{gt_geo.spacing} ({pair.pred_path} vs {pair.gt_path}); "
            "predictions must be resampled to the reference grid"
        )
    if pair.spacing is not None:
        spacing = pair.spacing
    elif gt_geo is not None:
        spacing = gt_geo.spacing
    elif pred_geo is not None:
        spacing = pred_geo.spacing
    else:
        raise ValueError(
            f"case {pair.case_id}: arrays given without spacing; pass CasePair(spacing=(z, y, x) mm)"
        )
    return pred, gt, tuple(float(s) for s in spacing)  # type: ignore[return-value]


def evaluate_case(pair: CasePair, labels: Sequence[int], nsd_tolerance_mm: float = 2.0) -> CaseResult:
    """Metrics of one case for the given class values (cheap to map over a Dask cluster)."""
    pred, gt, spacing = load_pair(pair)
    return CaseResult(
        case_id=pair.case_id,
        reference_file=str(pair.gt_path) if pair.gt_path is not None else f"<array:{pair.case_id}>",
        prediction_file=str(pair.pred_path) if pair.pred_path is not None else f"<array:{pair.case_id}>",
        spacing=spacing,
        metrics=case_metrics(pred, gt, spacing, list(labels), nsd_tolerance_mm),
    )


def summarize(
    results: Sequence[CaseResult],
    label_names: Mapping[int, str],
    nsd_tolerance_mm: float = 2.0,
    model: Mapping[str, Any] | None = None,
) -> Summary:
    """Aggregate case results: per-class mean over cases and foreground mean over classes (NaN ignored)."""
    labels = sorted({k for r in results for k in r.metrics})
    mean: dict[int, dict[str, float]] = {}
    for lab in labels:
        keys = [k for k in METRIC_KEYS if any(k in r.metrics.get(lab, {}) for r in results)]
        mean[lab] = {
            key: _nanmean([r.metrics[lab][key] for r in results if key in r.metrics.get(lab, {})])
            for key in keys
        }
    fg_labels = [lab for lab in labels if lab != 0]
    foreground_mean = {
        key: _nanmean([mean[lab][key] for lab in fg_labels if key in mean[lab]])
        for key in METRIC_KEYS
        if any(key in mean[lab] for lab in fg_labels)
    }
    return Summary(
        metric_per_case=list(results),
        mean=mean,
        foreground_mean=foreground_mean,
        label_names={int(k): str(v) for k, v in label_names.items()},
        model=dict(model or {}),
        nsd_tolerance_mm=float(nsd_tolerance_mm),
    )


def evaluate_cases(
    pairs: Sequence[CasePair],
    label_names: Mapping[int, str],
    nsd_tolerance_mm: float = 2.0,
    model: Mapping[str, Any] | None = None,
) -> Summary:
    """Evaluate every pair for the foreground classes of ``label_names`` (keys != 0).

    Args:
        pairs: cases to evaluate (see :class:`CasePair`).
        label_names: ``{class value: name}``; class 0 (background) is never evaluated.
        nsd_tolerance_mm: NSD tolerance in mm.
        model: free-form provenance copied into ``summary.json["model"]``.
    """
    labels = sorted(int(k) for k in label_names if int(k) != 0)
    if not labels:
        raise ValueError(f"label_names {dict(label_names)!r} has no foreground class (keys other than 0)")
    if not pairs:
        raise ValueError(
            "evaluate_cases got no case pairs: is the test split empty or were no predictions written?"
        )
    ids = [p.case_id for p in pairs]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        raise ValueError(f"duplicate case ids in evaluation pairs: {dupes}")
    results = [evaluate_case(p, labels, nsd_tolerance_mm) for p in pairs]
    return summarize(results, {k: v for k, v in label_names.items() if int(k) != 0}, nsd_tolerance_mm, model)


def write_summary(summary: Summary, path: Path) -> Path:
    """Atomically write ``summary.json`` (strict JSON, NaN as null) and return its path."""
    return write_json(path, summary.to_json_dict(), allow_nan=False, default=str, newline=True)


def load_summary(path: Path) -> Summary:
    """Read a ``summary.json`` written by :func:`write_summary` (or by nnU-Net v2)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"{path}: summary.json not found (run the evaluate stage first)") from exc
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc}); delete it and re-run the evaluate stage") from exc
    if not isinstance(data, dict) or "metric_per_case" not in data:
        raise ValueError(f"{path}: not a summary.json (no 'metric_per_case' key)")
    return Summary.from_json_dict(data)
