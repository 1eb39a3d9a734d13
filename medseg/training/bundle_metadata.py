"""A model bundle's ``metadata.json``: its reader, without torch (``medseg status`` and reports read it too)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

BUNDLE_SCHEMA = 1
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
    if not isinstance(meta, dict) or meta.get("schema") != BUNDLE_SCHEMA:
        raise BundleError(f"{meta_path}: unsupported bundle schema {meta.get('schema')!r} (expected {BUNDLE_SCHEMA})")
    return meta
