"""Multi-channel stores in preprocessing: per-channel fingerprint and normalisation (as nnU-Net), channel checks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from medseg.config import PreprocessConfig, TrainConfig
from medseg.geometry import Geometry
from medseg.io.case_arrays import channel_names, open_channels
from medseg.io.volume_store import CaseVolume, write_case
from medseg.plan import Normalization
from medseg.preprocess.case import MissingChannelError, input_channels, preprocess_case
from medseg.preprocess.fingerprint import aggregate, fingerprint_case
from medseg.preprocess.planner import make_plan

SHAPE = (12, 40, 40)
GEOM = Geometry.create([3.0, 1.0, 1.0], [0.0, 0.0, 0.0])


def _store(path: Path, seed: int, names: list[str] | None = ("T1", "FLAIR")) -> Path:  # type: ignore[assignment]
    rng = np.random.default_rng(seed)
    body = np.zeros(SHAPE, bool)
    body[2:10, 5:35, 5:35] = True
    t1 = np.where(body, rng.normal(100, 10, SHAPE), 0).astype(np.float32)
    flair = np.where(body, rng.normal(1000, 300, SHAPE), 0).astype(np.float32)
    gt = np.zeros(SHAPE, np.uint8)
    gt[4:8, 15:25, 15:25] = 1
    names = list(names or [])
    write_case(path, CaseVolume(path.stem, t1, GEOM, labels={"gt": gt}, label_names={1: "tumor"},
                                source={"modality": "MR"}, channels=[flair] if len(names) > 1 else [],
                                channel_names=names))
    return path


def test_fingerprint_and_plan_are_per_channel(tmp_path: Path) -> None:
    paths = [_store(tmp_path / f"case_{i}.zarr", i) for i in range(2)]
    parts = [fingerprint_case(p, num_samples=500) for p in paths]
    fp_case, samples = parts[0]
    assert fp_case.channel_names == ["T1", "FLAIR"] and samples.shape == (2, 500)
    t1, flair = fp_case.channel_intensity
    assert t1 is not None and flair is not None
    assert t1.mean == pytest.approx(100, abs=3) and flair.mean == pytest.approx(1000, abs=60)
    fp = aggregate([p[0] for p in parts], [p[1] for p in parts])
    assert fp.channel_names == ["T1", "FLAIR"] and len(fp.channel_intensity) == 2
    assert fp.foreground_intensity == fp.channel_intensity[0]  # the top level describes the first channel
    plan = make_plan(fp, PreprocessConfig(target_spacing=(3.0, 1.0, 1.0)), TrainConfig(filters=[4, 8, 16, 32]))
    assert plan.channel_names == ["T1", "FLAIR"] and plan.in_channels == 2
    assert [c.normalization for c in plan.channels] == [Normalization.ZSCORE] * 2


def test_single_and_multi_channel_cases_do_not_mix(tmp_path: Path) -> None:
    parts = [fingerprint_case(_store(tmp_path / "case_a.zarr", 0), 100),
             fingerprint_case(_store(tmp_path / "case_b.zarr", 1, names=None), 100)]
    assert parts[1][0].channel_names == [] and parts[1][1].shape == (100,)
    with pytest.raises(ValueError, match="different input channels"):
        aggregate([p[0] for p in parts], [p[1] for p in parts])


def test_each_channel_is_normalised_on_its_own(tmp_path: Path) -> None:
    paths = [_store(tmp_path / f"case_{i}.zarr", i) for i in range(2)]
    parts = [fingerprint_case(p, num_samples=500) for p in paths]
    plan = make_plan(aggregate([p[0] for p in parts], [p[1] for p in parts]),
                     PreprocessConfig(target_spacing=(3.0, 1.0, 1.0)), TrainConfig(filters=[4, 8, 16, 32]))
    out = tmp_path / "pre" / "case_0.zarr"
    preprocess_case(paths[0], out, plan)
    assert channel_names(out) == ["T1", "FLAIR"]
    t1, flair = (np.asarray(a[...]) for a in open_channels(out))
    inside = t1 != 0
    for ch in (t1, flair):  # z-score of its own values: FLAIR (mean 1000, std 300) lands on the T1 scale
        assert float(ch[inside].mean()) == pytest.approx(0.0, abs=0.05)
        assert float(ch[inside].std()) == pytest.approx(1.0, abs=0.05)
    assert not np.allclose(t1, flair)


def test_a_case_missing_a_plan_channel_is_refused_by_name(tmp_path: Path) -> None:
    paths = [_store(tmp_path / f"case_{i}.zarr", i) for i in range(2)]
    parts = [fingerprint_case(p, num_samples=100) for p in paths]
    plan = make_plan(aggregate([p[0] for p in parts], [p[1] for p in parts]),
                     PreprocessConfig(target_spacing=(3.0, 1.0, 1.0)), TrainConfig(filters=[4, 8, 16, 32]))
    single = _store(tmp_path / "case_s.zarr", 5, names=["T1"])
    with pytest.raises(MissingChannelError, match="lacks channel\\(s\\) FLAIR"):
        input_channels(single, plan)
    with pytest.raises(MissingChannelError, match="FLAIR"):
        preprocess_case(single, tmp_path / "pre" / "case_s.zarr", plan)
    assert len(input_channels(paths[0], plan)) == 2


def test_a_single_named_channel_plans_like_one_image(tmp_path: Path) -> None:
    """One ingest.channels rule: one input channel, named; its statistics are there for CT normalisation too."""
    paths = [_store(tmp_path / f"case_{i}.zarr", i, names=["CT"]) for i in range(2)]
    parts = [fingerprint_case(p, num_samples=100) for p in paths]
    assert parts[0][0].channel_intensity == [parts[0][0].intensity]
    plan = make_plan(aggregate([p[0] for p in parts], [p[1] for p in parts]),
                     PreprocessConfig(target_spacing=(3.0, 1.0, 1.0)), TrainConfig(filters=[4, 8, 16, 32]))
    assert plan.channel_names == ["CT"] and plan.in_channels == 1
    assert plan.channels[0].normalization == Normalization.CT and plan.channels[0].clip_range is not None
    assert plan.normalization == Normalization.CT and plan.clip_range == plan.channels[0].clip_range
    preprocess_case(paths[0], tmp_path / "pre" / "case_0.zarr", plan)
    assert len(open_channels(tmp_path / "pre" / "case_0.zarr")) == 1
