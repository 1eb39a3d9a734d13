"""Ingest the synthetic demo archive and compare with what the generator put in it."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medseg.config import IngestConfig
from medseg.demo.archive import generate_demo_archive, phantom_for_case
from medseg.ingest.run import ingest
from medseg.io.catalog import Catalog
from medseg.io.volume_store import read_case
from medseg.workspace import Workspace


def test_demo_archive_round_trip(tmp_path: Path) -> None:
    manifest = generate_demo_archive(tmp_path / "archive", cases=3, seed=5)
    ws = Workspace.at(tmp_path / "ws")
    s = ingest([tmp_path / "archive"], ws, IngestConfig(deid_secret="demo-secret", files_per_batch=64))
    assert (s.cases, s.labeled_cases) == (3, 3)
    cat = Catalog(ws.catalog_path)
    assert [q["path"].rsplit("/", 1)[-1] for q in cat.quarantine()] == ["manifest.json"]
    for demo in manifest.cases:
        rec = cat.case(demo.series_instance_uid)
        assert rec.shape == tuple(demo.shape) and rec.label_names == {1: "organ", 2: "lesion"}
        case = read_case(rec.volume_path)
        image, label, geometry = phantom_for_case(5, demo.case_index)
        np.testing.assert_array_equal(case.image, image)
        np.testing.assert_array_equal(case.labels["gt"], label)
        np.testing.assert_allclose(case.geometry.spacing, geometry.spacing, atol=1e-4)
        np.testing.assert_allclose(case.geometry.origin, geometry.origin, atol=1e-3)
        np.testing.assert_allclose(case.geometry.direction_matrix, geometry.direction_matrix, atol=1e-5)
        assert rec.patient_key != demo.patient_id and demo.patient_id not in rec.model_dump_json()
