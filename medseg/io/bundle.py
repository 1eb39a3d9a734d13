"""A model bundle's metadata on disk (``metadata.json`` and its other JSON files), without torch.

``medseg status`` and reports read it too; the torch side (weights, loading the network) is
:mod:`medseg.training.bundle`.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from medseg.io.json_file import SCHEMA_FIELD, SchemaVersionError, check_schema_version, write_json

BUNDLE_SCHEMA_VERSION = 1
METADATA_FILE = "metadata.json"


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
    try:
        check_schema_version(meta, meta_path, BUNDLE_SCHEMA_VERSION, "bundle")
    except SchemaVersionError as exc:
        raise BundleError(str(exc)) from None
    return dict(meta)


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
