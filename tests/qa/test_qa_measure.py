"""Measuring prediction stores slab by slab: volumes, model-vs-model Dice, and an unreadable store."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from medseg.config import QAConfig
from medseg.evaluation.metrics import dice
from medseg.geometry import Geometry
from medseg.io.volume_store import CaseVolume, write_case
from medseg.qa.assess import assess_predictions
from medseg.qa.confidence import Confidence, confidence_source, read_confidence
from medseg.qa.measure import measure_case
from medseg.qa.record import MAX_SCORE, SignalKind
from medseg.qa.volumes import label_volumes_ml

SPACING = (2.0, 0.8, 0.8)
NAMES = {1: "organ", 2: "lesion"}


def _store(path: Path, label: np.ndarray, source: dict[str, object] | None = None) -> Path:
    geometry = Geometry.create(SPACING, (0.0, 0.0, 0.0))
    case = CaseVolume(case_id=path.stem, image=np.zeros(label.shape, np.int16), geometry=geometry,
                      labels={"pred": label}, label_names=NAMES, source=source or {}, kind="prediction")
    return write_case(path, case, chunks=(3, 16, 16))  # several slabs


def _labels() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    a = np.zeros((10, 20, 20), np.uint8)
    a[2:8, 4:16, 4:16] = 1
    a[4:6, 8:12, 8:12] = 2
    b = np.roll(a, 2, axis=2)
    b[rng.random(b.shape) < 0.02] = 0
    return a, b


def test_volumes_and_agreement_equal_whole_volume_measures(tmp_path: Path) -> None:
    a, b = _labels()
    stores = {"cnn": _store(tmp_path / "cnn" / "c1.zarr", a), "gan": _store(tmp_path / "gan" / "c1.zarr", b)}
    measured = measure_case(stores)
    assert measured.errors == {}
    assert measured.volumes["cnn"] == pytest.approx(label_volumes_ml(a, SPACING, NAMES))
    assert measured.volumes["gan"] == pytest.approx(label_volumes_ml(b, SPACING, NAMES))
    expected = np.mean([dice(a == c, b == c) for c in (1, 2)])
    assert measured.agreements[("cnn", "gan")] == pytest.approx(expected)
    assert measured.confidences == {"cnn": None, "gan": None}  # stores without a record (older predictions)


def test_the_confidence_record_round_trips_through_the_store(tmp_path: Path) -> None:
    a, _ = _labels()
    rec = Confidence(foreground_voxels=5, histogram=[0] * 19 + [5])
    store = _store(tmp_path / "c1.zarr", a, source={"model_family": "cnn", **confidence_source(rec)})
    assert read_confidence(store) == rec
    bad = _store(tmp_path / "c2.zarr", a, source={"confidence": {"schema_version": 99}})
    with pytest.raises(ValueError, match=r"c2.zarr: confidence record of schema 99 .*predict the case again"):
        read_confidence(bad)


def test_an_unreadable_prediction_is_flagged_first(tmp_path: Path) -> None:
    a, b = _labels()
    _store(tmp_path / "cnn" / "good.zarr", a)
    (tmp_path / "cnn" / "broken.zarr").mkdir()  # a store that was never completed
    report = assess_predictions({"cnn": tmp_path / "cnn"}, {}, QAConfig(), "r")
    first = report.cases[0]
    assert first.case_id == "broken" and first.score == MAX_SCORE
    assert first.signals[0].kind == SignalKind.UNREADABLE and "could not be read" in first.reasons[0]
    assert not report.cases[1].flagged
    assert "one model only: no model-vs-model agreement" in report.notes
    assert any("no confidence record" in n for n in report.notes)
