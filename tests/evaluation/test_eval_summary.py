"""evaluate_cases / summary.json: aggregation rules, JSON structure, stores and NIfTI inputs, errors."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from medseg.evaluation import metrics as m
from medseg.evaluation.summary import (
    CasePair,
    evaluate_case,
    evaluate_cases,
    load_summary,
    write_summary,
)
from medseg.geometry import Geometry
from medseg.io.nifti import write_nifti
from medseg.io.volume_store import CaseVolume, write_case

SPACING = (2.5, 0.8, 0.7)
NAMES = {1: "liver", 2: "tumor"}


def _labels(
    shape: tuple[int, int, int], liver: tuple[slice, ...], tumor: tuple[slice, ...] | None
) -> np.ndarray:
    a = np.zeros(shape, dtype=np.uint8)
    a[liver] = 1
    if tumor is not None:
        a[tumor] = 2
    return a


@pytest.fixture()
def three_cases() -> list[CasePair]:
    shape = (8, 20, 20)
    s = np.s_
    gt_a = _labels(shape, s[1:6, 2:15, 2:15], s[2:4, 5:8, 5:8])
    pred_a = _labels(shape, s[1:6, 3:15, 2:16], s[2:4, 5:9, 5:8])
    gt_b = _labels(shape, s[2:7, 4:18, 4:18], None)  # no tumor in reference ...
    pred_b = _labels(shape, s[2:7, 4:17, 4:18], None)  # ... nor prediction: tumor metrics NaN
    gt_c = _labels(shape, s[0:5, 0:10, 0:10], s[1:3, 1:3, 1:3])
    pred_c = _labels(shape, s[0:5, 0:11, 0:10], None)  # missed tumor: Dice 0, HD95 = diagonal
    return [
        CasePair("a", pred=pred_a, gt=gt_a, spacing=SPACING),
        CasePair("b", pred=pred_b, gt=gt_b, spacing=SPACING),
        CasePair("c", pred=pred_c, gt=gt_c, spacing=SPACING),
    ]


def test_means_ignore_nan_and_foreground_mean(three_cases: list[CasePair]) -> None:
    summary = evaluate_cases(
        three_cases, {0: "background", **NAMES}, nsd_tolerance_mm=1.0, model={"family": "cnn"}
    )
    assert sorted(summary.mean) == [1, 2]  # background never evaluated
    per_case = {c.case_id: c.metrics for c in summary.metric_per_case}
    assert math.isnan(per_case["b"][2]["Dice"]) and math.isnan(per_case["b"][2]["HD95"])
    assert per_case["c"][2]["Dice"] == 0.0
    assert per_case["c"][2]["HD95"] == pytest.approx(m.image_diagonal_mm((8, 20, 20), SPACING))
    for lab in (1, 2):
        for key in m.METRIC_KEYS:
            values = [per_case[c][lab][key] for c in "abc"]
            expected = float(np.nanmean(values))
            assert summary.mean[lab][key] == pytest.approx(expected), (lab, key)
    # the tumor mean is over cases a and c only
    assert summary.mean[2]["Dice"] == pytest.approx((per_case["a"][2]["Dice"] + 0.0) / 2)
    for key in m.METRIC_KEYS:
        assert summary.foreground_mean[key] == pytest.approx(
            (summary.mean[1][key] + summary.mean[2][key]) / 2
        )
    # direct metric calls agree with the summary
    direct = m.case_metrics(three_cases[0].pred, three_cases[0].gt, SPACING, [1, 2], 1.0)  # type: ignore[arg-type]
    assert per_case["a"] == direct


def test_summary_json_structure_and_roundtrip(three_cases: list[CasePair], tmp_path: Path) -> None:
    summary = evaluate_cases(three_cases, NAMES, model={"family": "gan", "version": "v3"})
    path = write_summary(summary, tmp_path / "eval" / "summary.json")

    def no_nan(token: str) -> float:
        raise AssertionError(f"non-standard JSON token {token} in summary.json")

    data = json.loads(path.read_text(), parse_constant=no_nan)
    assert {"metric_per_case", "mean", "foreground_mean", "label_names", "model"} <= set(data)
    assert data["label_names"] == {"1": "liver", "2": "tumor"}
    assert data["model"] == {"family": "gan", "version": "v3"}
    assert data["n_cases"] == 3 and data["nsd_tolerance_mm"] == 2.0
    first = data["metric_per_case"][0]
    assert {"reference_file", "prediction_file", "metrics"} <= set(first)
    assert set(first["metrics"]) == {"1", "2"}
    assert list(first["metrics"]["1"]) == list(m.METRIC_KEYS)
    assert set(data["mean"]) == {"1", "2"} and set(data["foreground_mean"]) == set(m.METRIC_KEYS)
    assert data["metric_per_case"][1]["metrics"]["2"]["Dice"] is None  # NaN -> null
    back = load_summary(path)
    assert back.label_names == NAMES and back.model == summary.model
    assert [c.case_id for c in back.metric_per_case] == ["a", "b", "c"]
    for orig, new in zip(summary.metric_per_case, back.metric_per_case, strict=True):
        for lab in orig.metrics:
            for key, value in orig.metrics[lab].items():
                assert (math.isnan(value) and math.isnan(new.metrics[lab][key])) or value == new.metrics[lab][
                    key
                ]
    assert back.foreground_mean == pytest.approx(summary.foreground_mean)


def test_reads_nnunet_style_summary_with_nan_token(tmp_path: Path) -> None:
    text = (
        '{"foreground_mean": {"Dice": 0.5}, "mean": {"1": {"Dice": 0.5}},'
        ' "metric_per_case": [{"metrics": {"1": {"Dice": NaN}}, "prediction_file": "/p/x.nii.gz",'
        ' "reference_file": "/r/x.nii.gz"}]}'
    )
    (tmp_path / "summary.json").write_text(text)
    s = load_summary(tmp_path / "summary.json")
    assert math.isnan(s.metric_per_case[0].metrics[1]["Dice"])
    assert s.label_names == {1: "class_1"} and s.metric_per_case[0].case_id == "x.nii.gz"


def _store(path: Path, label_name: str, label: np.ndarray, spacing: tuple[float, float, float]) -> Path:
    geo = Geometry.create(spacing=spacing, origin=(0.0, 0.0, 0.0))
    case = CaseVolume(
        case_id=path.stem,
        image=np.zeros(label.shape, dtype=np.int16),
        geometry=geo,
        labels={label_name: label},
        label_names=NAMES,
    )
    return write_case(path, case)


def test_stores_and_nifti_inputs_use_reference_spacing(tmp_path: Path) -> None:
    shape = (6, 16, 16)
    gt = _labels(shape, np.s_[1:5, 2:12, 2:12], None)
    pred = _labels(shape, np.s_[2:5, 2:13, 3:12], None)
    spacing = (4.0, 0.5, 0.6)
    gt_path = _store(tmp_path / "volumes" / "case1.zarr", "gt", gt, spacing)
    pred_path = _store(tmp_path / "pred" / "case1.zarr", "pred", pred, spacing)
    nii = write_nifti(tmp_path / "pred" / "case1.nii.gz", pred, Geometry.create(spacing, (0.0, 0.0, 0.0)))
    expected = m.case_metrics(pred, gt, spacing, [1, 2])
    for p in (pred_path, nii):
        result = evaluate_case(CasePair("case1", pred_path=p, gt_path=gt_path), [1, 2])
        assert result.spacing == pytest.approx(spacing)
        assert result.reference_file == str(gt_path) and result.prediction_file == str(p)
        for lab in (1, 2):
            for key, v in expected[lab].items():
                got = result.metrics[lab][key]
                assert (math.isnan(v) and math.isnan(got)) or got == pytest.approx(v), (p, lab, key)
    # unit spacing would give another HD95: the geometry really was used
    assert expected[1]["HD95"] != pytest.approx(m.hd95(pred == 1, gt == 1, (1.0, 1.0, 1.0)))


def test_pair_errors_name_the_problem(tmp_path: Path) -> None:
    shape = (4, 8, 8)
    gt = _labels(shape, np.s_[1:3, 2:6, 2:6], None)
    gt_path = _store(tmp_path / "gt.zarr", "gt", gt, (2.0, 1.0, 1.0))
    other = _store(tmp_path / "other.zarr", "pred", gt, (3.0, 1.0, 1.0))
    with pytest.raises(ValueError, match="spacing"):
        evaluate_case(CasePair("x", pred_path=other, gt_path=gt_path), [1])
    with pytest.raises(KeyError, match="labels/pred/0"):
        evaluate_case(CasePair("x", pred_path=gt_path, gt_path=gt_path), [1])
    with pytest.raises(ValueError, match="shape"):
        evaluate_case(CasePair("x", pred=np.zeros((4, 8, 9), np.uint8), gt_path=gt_path), [1])
    with pytest.raises(ValueError, match="spacing"):
        evaluate_case(CasePair("x", pred=gt, gt=gt), [1])
    with pytest.raises(FileNotFoundError, match="missing.zarr"):
        evaluate_case(CasePair("x", pred_path=tmp_path / "missing.zarr", gt_path=gt_path), [1])
    with pytest.raises(ValueError, match="needs pred"):
        CasePair("x", gt=gt)
    pair = CasePair("x", pred=gt, gt=gt, spacing=(1.0, 1.0, 1.0))
    with pytest.raises(ValueError, match="duplicate"):
        evaluate_cases([pair, pair], NAMES)
    with pytest.raises(ValueError, match="foreground"):
        evaluate_cases([pair], {0: "background"})
    with pytest.raises(ValueError, match="no case pairs"):
        evaluate_cases([], NAMES)
    with pytest.raises(ValueError, match="not valid JSON"):
        (tmp_path / "bad.json").write_text("{")
        load_summary(tmp_path / "bad.json")
