"""medseg.demo.manifest: the demo archive's manifest.json, saved with stable bytes and read back."""

from __future__ import annotations

from pathlib import Path

import pytest

from medseg.demo.manifest import MANIFEST_NAME, DemoManifest, load_manifest


def test_manifest_round_trip_and_missing_file(tmp_path: Path) -> None:
    manifest = DemoManifest(seed=3, n_cases=0, n_patients=0, label_names={1: "organ"}, total_bytes=0, cases=[])
    path = manifest.save(tmp_path)
    assert path == tmp_path / MANIFEST_NAME
    first = path.read_bytes()
    assert load_manifest(tmp_path) == manifest and manifest.generator == "medseg.demo"
    load_manifest(tmp_path).save(tmp_path)
    assert path.read_bytes() == first  # stable bytes
    with pytest.raises(FileNotFoundError, match="no demo manifest"):
        load_manifest(tmp_path / "empty")
