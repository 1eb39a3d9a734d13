"""A bundle's metadata.json: written with its schema_version, read back (older ``schema`` key too), checked."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from medseg.io.bundle import BUNDLE_SCHEMA_VERSION, METADATA_FILE, BundleError, read_metadata, write_metadata


def test_round_trip_is_strict_json(tmp_path: Path) -> None:
    write_metadata(tmp_path, {"family": "cnn", "dice": math.nan, "n": np.int64(3), "p": Path("/x")})
    raw = json.loads((tmp_path / METADATA_FILE).read_text())
    assert raw == {"schema_version": BUNDLE_SCHEMA_VERSION, "family": "cnn", "dice": None, "n": 3, "p": "/x"}
    assert read_metadata(tmp_path)["family"] == "cnn"


def test_reads_bundles_written_with_the_old_schema_key(tmp_path: Path) -> None:
    (tmp_path / METADATA_FILE).write_text(json.dumps({"schema": BUNDLE_SCHEMA_VERSION, "family": "cnn"}))
    assert read_metadata(tmp_path)["family"] == "cnn"


@pytest.mark.parametrize("text", ["{}", '{"schema_version": 99}', "[1]", "{"])
def test_other_versions_and_corrupt_files_are_bundle_errors(tmp_path: Path, text: str) -> None:
    (tmp_path / METADATA_FILE).write_text(text)
    with pytest.raises(BundleError, match=METADATA_FILE):
        read_metadata(tmp_path)
    with pytest.raises(BundleError, match="not found"):
        read_metadata(tmp_path / "missing")
