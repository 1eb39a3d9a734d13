"""A model bundle's metadata on disk (``metadata.json``, ``cv_metrics.json`` and its other JSON files), without torch.

``medseg status`` and reports read it too; the torch side (weights, loading the network) is
:mod:`medseg.training.bundle`.

Metadata schema versions: 1 = a single model (``model.pt``); 2 adds ``kind`` (``"single"`` |
``"ensemble"``) and, for an ensemble (``train.folds`` > 1), ``ensemble`` = ``{folds, members,
combine}`` with one ``fold_<i>/model.pt`` per member. Both are read; a version-1 bundle is a single model.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from medseg.io.json_file import (
    SCHEMA_FIELD,
    SchemaVersionError,
    check_schema_version,
    schema_version_of,
    write_json,
)

BUNDLE_SCHEMA_VERSION = 2
#: metadata schema versions this medseg reads (1: single models written before ensembles existed)
READABLE_BUNDLE_SCHEMAS = (1, 2)
METADATA_FILE = "metadata.json"
#: cross-validation results of an ensemble bundle (per fold and pooled over the out-of-fold cases)
CV_METRICS_FILE = "cv_metrics.json"
CV_SCHEMA_VERSION = 1
SINGLE = "single"
ENSEMBLE = "ensemble"


class BundleError(RuntimeError):
    """A model bundle is missing, incomplete or corrupt."""


def read_metadata(path: Path) -> dict[str, Any]:
    """The bundle's ``metadata.json`` (raises :class:`BundleError` naming the file when absent/corrupt)."""
    meta_path = Path(path) / METADATA_FILE
    if not meta_path.is_file():
        raise BundleError(f"{meta_path} not found: {path} is not a complete model bundle (re-run `medseg train`)")
    try:
        meta = json.loads(meta_path.read_text())
    except json.JSONDecodeError as exc:
        raise BundleError(f"{meta_path} is not valid JSON ({exc}); the bundle is corrupt") from exc
    found = schema_version_of(meta) if isinstance(meta, dict) else None
    if found not in READABLE_BUNDLE_SCHEMAS:
        try:
            check_schema_version(meta, meta_path, BUNDLE_SCHEMA_VERSION, "bundle")
        except SchemaVersionError as exc:
            raise BundleError(str(exc)) from None
    return dict(meta)


def bundle_kind(meta: dict[str, Any]) -> str:
    """``"ensemble"`` for a k-fold ensemble bundle, else ``"single"`` (every schema-1 bundle)."""
    return ENSEMBLE if meta.get("kind") == ENSEMBLE else SINGLE


def ensemble_folds(meta: dict[str, Any]) -> int:
    """Number of models in the bundle (1 for a single model)."""
    return int((meta.get("ensemble") or {}).get("folds", 1)) if bundle_kind(meta) == ENSEMBLE else 1


def member_dirs(meta: dict[str, Any]) -> list[str]:
    """Sub-folders holding the members' ``model.pt`` (``[""]``: the bundle folder itself, a single model)."""
    if bundle_kind(meta) != ENSEMBLE:
        return [""]
    return [str(m) for m in (meta.get("ensemble") or {}).get("members", [])]


def write_cv_metrics(path: Path, cv: dict[str, Any]) -> Path:
    """Write ``<path>/cv_metrics.json`` (``cv`` with its ``schema_version`` first); return its path.

    ``cv``: ``family``, ``folds``, ``seed``, ``per_fold`` (list of ``{fold, train_cases, val_cases,
    mean_dice, mean_dice_per_class, dice_per_case, ...}``) and ``pooled`` (the same scores over the
    out-of-fold cases of all folds: ``cases``, ``mean_dice``, ``mean_dice_per_class``, ``dice_per_case``).
    """
    return write_bundle_json(Path(path) / CV_METRICS_FILE, {SCHEMA_FIELD: CV_SCHEMA_VERSION, **cv})


def read_cv_metrics(path: Path) -> dict[str, Any]:
    """The ``cv_metrics.json`` of the ensemble bundle at ``path`` (:class:`BundleError` when absent/corrupt)."""
    cv_path = Path(path) / CV_METRICS_FILE
    if not cv_path.is_file():
        raise BundleError(f"{cv_path} not found: {path} is not a cross-validated ensemble bundle")
    try:
        data = json.loads(cv_path.read_text())
        check_schema_version(data, cv_path, CV_SCHEMA_VERSION, "cross-validation metrics")
    except (json.JSONDecodeError, SchemaVersionError) as exc:
        raise BundleError(f"{cv_path} is unreadable: {exc}") from None
    return dict(data)


def bundle_channel_names(metadata: dict[str, Any]) -> list[str]:
    """Input channel names of a bundle's metadata, in network order; ``[]`` for a single-channel model."""
    return [str(n) for n in metadata.get("channel_names") or []]


def write_metadata(path: Path, metadata: dict[str, Any]) -> Path:
    """Write ``<path>/metadata.json`` (``metadata`` with this format's ``schema_version`` first); return its path."""
    return write_bundle_json(Path(path) / METADATA_FILE, {SCHEMA_FIELD: BUNDLE_SCHEMA_VERSION, **metadata})


def write_bundle_json(path: Path, data: Any) -> Path:
    """Write a bundle's JSON file atomically as strict JSON (NaN/inf as null, numpy scalars and paths converted)."""
    return write_json(path, _clean_nan(data), default=_json_default, allow_nan=False, mkdir=False)


def _clean_nan(obj: Any) -> Any:
    """Replace NaN/inf floats by None so the JSON is strict."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _clean_nan(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean_nan(v) for v in obj]
    return obj


def _json_default(obj: Any) -> Any:
    if isinstance(obj, (np.floating, np.integer)):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
