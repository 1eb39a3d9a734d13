"""Multi-sequence cases (ingest.channels): rule matching, study grouping, missing channels, store layout."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from medseg.config import ChannelRule, IngestConfig, MedsegConfig
from medseg.config_loader import load_config
from medseg.geometry import Geometry
from medseg.ingest.build import LabelSource
from medseg.ingest.channels import channel_of, plan_channels
from medseg.ingest.stacks import Stack
from medseg.io.case_arrays import channel_names, open_channels
from medseg.io.reasons import Reason
from medseg.io.volume_store import CaseVolume, read_case, write_case

RULES = [("T1post", "T1post|T1.*GD", None), ("FLAIR", "FLAIR", None), ("T2", "T2", None)]


@pytest.mark.parametrize(
    ("description", "channel"),
    [
        ("T1post", "T1post"),
        ("AX T1 SE +GD", "T1post"),
        ("FLAIRreg", "FLAIR"),
        ("AX T2 FLAIR", "FLAIR"),  # contains "T2": the FLAIR rule comes first and wins
        ("t2reg", "T2"),  # case-insensitive
        ("T2reg", "T2"),
        ("MaskTumor", None),
        ("localizer", None),
    ],
)
def test_first_matching_rule_wins(description: str, channel: str | None) -> None:
    assert channel_of(description, RULES) == channel


def test_exclude_keeps_a_general_rule_off_a_specific_series() -> None:
    rules = [("T2", "T2", "FLAIR"), ("FLAIR", "FLAIR", None)]  # T2 listed first, so it must exclude FLAIR
    assert channel_of("AX T2 FLAIR", rules) == "FLAIR"
    assert channel_of("AX T2 TSE", rules) == "T2"
    assert channel_of("AX T2 FLAIR", [("T2", "T2", None), ("FLAIR", "FLAIR", None)]) == "T2"


def test_channel_rules_are_validated() -> None:
    with pytest.raises(ValidationError, match="not a valid regular expression"):
        ChannelRule(name="T1", match="T1(")
    with pytest.raises(ValidationError, match="repeat"):
        IngestConfig(channels=[ChannelRule(name="T1", match="T1"), ChannelRule(name="T1", match="MPRAGE")])
    assert IngestConfig().channels == []  # default: one series per case, as before


def test_channels_override_syntax() -> None:
    """The `--set` form given in README.md."""
    cfg = load_config(None, ['ingest.channels=[{name: T1post, match: "T1post|T1.*GD"}, {name: FLAIR, match: FLAIR}, '
                             '{name: T2, match: T2, exclude: FLAIR}]'])
    assert [(r.name, r.match, r.exclude) for r in cfg.ingest.channels] == [
        ("T1post", "T1post|T1.*GD", None), ("FLAIR", "FLAIR", None), ("T2", "T2", "FLAIR")]
    assert MedsegConfig().ingest.channels == []


def _stack(desc: str, study: str, uid: str) -> Stack:
    g = Geometry.create([5.0, 1.0, 1.0], [0.0, 0.0, 0.0])
    return Stack(series_uid=uid, stack_key="", frames=[], info={"description": desc, "study_key": study},
                 geometry=g, paths=[f"/{uid}/0.dcm", f"/{uid}/1.dcm"])


def test_plan_channels_groups_a_study_and_moves_labels_to_the_reference() -> None:
    t1, fl, t2, loc = (_stack("T1post", "s1", "1"), _stack("FLAIRreg", "s1", "2"), _stack("T2reg", "s1", "3"),
                       _stack("localizer", "s1", "4"))
    mask = LabelSource(kind="mask", series_uid="m")
    labels = {id(fl): [mask]}  # a label source linked to a non-reference channel
    plan = plan_channels([t2, loc, fl, t1], RULES, labels)
    assert plan.names == {id(t1): ("T1post", "FLAIR", "T2")}
    assert [(c.name, c.series_uid) for c in plan.extra[id(t1)]] == [("FLAIR", "2"), ("T2", "3")]
    assert labels == {id(t1): [mask]}
    rows = {s.series_uid: (status, reason) for s, status, reason, _ in plan.rows}
    assert rows == {"2": ("channel_source", None), "3": ("channel_source", None), "4": ("unused", None)}
    assert plan.not_cases == {id(fl), id(t2), id(loc)}


def test_a_study_missing_a_channel_is_reported_not_dropped() -> None:
    t1 = _stack("T1post", "s3", "1")
    plan = plan_channels([t1], RULES, {})
    assert plan.names == {} and plan.extra == {}
    ((stack, status, reason, message),) = plan.rows
    assert stack is t1 and status == "quarantined" and reason == Reason.MISSING_CHANNEL
    assert "study s3" in message and "FLAIR, T2" in message


def test_two_series_for_one_channel_are_ambiguous() -> None:
    stacks = [_stack("T1post", "s", "1"), _stack("FLAIR", "s", "2"), _stack("T2", "s", "3"), _stack("T2 b", "s", "5")]
    plan = plan_channels(stacks, RULES, {})
    assert plan.names == {}
    assert {r for _, _, r, _ in plan.rows} == {Reason.CHANNEL_AMBIGUOUS}
    assert "T2" in plan.rows[0][3] and len(plan.rows) == 4


def test_store_round_trip_keeps_channels_and_single_channel_stores_unchanged(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    g = Geometry.create([2.0, 1.0, 1.0], [1.0, 2.0, 3.0])
    img = rng.integers(0, 100, (3, 4, 5)).astype(np.int16)
    chans = [rng.normal(size=(3, 4, 5)).astype(np.float32), rng.integers(0, 9, (3, 4, 5)).astype(np.int16)]
    write_case(tmp_path / "m.zarr", CaseVolume("m", img, g, channels=chans, channel_names=["T1post", "FLAIR", "T2"]))
    back = read_case(tmp_path / "m.zarr")
    assert back.channel_names == ["T1post", "FLAIR", "T2"]
    np.testing.assert_array_equal(back.image, img)
    for a, b in zip(back.channels, chans, strict=True):
        np.testing.assert_array_equal(a, b)
    assert channel_names(tmp_path / "m.zarr") == ["T1post", "FLAIR", "T2"]
    assert [tuple(a.shape) for a in open_channels(tmp_path / "m.zarr")] == [(3, 4, 5)] * 3
    write_case(tmp_path / "s.zarr", CaseVolume("s", img, g))
    assert channel_names(tmp_path / "s.zarr") == [] and len(open_channels(tmp_path / "s.zarr")) == 1
    assert not (tmp_path / "s.zarr" / "channels").exists()
    with pytest.raises(ValueError, match="channel names"):
        CaseVolume("x", img, g, channels=chans, channel_names=["a"])


def test_ingest_resamples_a_channel_on_another_grid_through_physical_space(tmp_path: Path) -> None:
    """A FLAIR series at twice the spacing, shifted by one T1 column: each FLAIR voxel centre lies on T1
    voxel ``(2k, 2j, 2i + 1)``, where the ingested FLAIR channel must hold that FLAIR voxel's value."""
    from dicom_factory import ct_slices, write
    from pydicom.uid import generate_uid

    from medseg.ingest.export import export_nifti
    from medseg.ingest.run import ingest
    from medseg.io.catalog import Catalog
    from medseg.workspace import Workspace

    study = generate_uid()
    t1, _ = ct_slices(n=6, rows=8, cols=10, spacing=(0.8, 0.6), step=2.5, study_uid=study, description="T1 GD",
                      modality="MR", seed=1)
    flair, flair_stored = ct_slices(n=3, rows=4, cols=5, spacing=(1.6, 1.2), step=5.0, origin=(-9.4, -20.0, 30.0),
                                    study_uid=study, description="AX T2 FLAIR", modality="MR", seed=2)
    lonely, _ = ct_slices(n=4, description="T1post", modality="MR", seed=3)  # another study, T1 only
    write(t1, tmp_path / "src" / "t1")
    write(flair, tmp_path / "src" / "flair")
    write(lonely, tmp_path / "src" / "lonely")
    cfg = IngestConfig(deid_secret="channels-secret", channels=[ChannelRule(name="T1post", match="T1post|T1.*GD"),
                                                                 ChannelRule(name="FLAIR", match="FLAIR")])
    ws = Workspace.at(tmp_path / "ws")
    summary = ingest([tmp_path / "src"], ws, cfg)
    assert summary.cases == 1
    cat = Catalog(ws.catalog_path)
    (record,) = cat.cases()
    case = read_case(record.volume_path)
    assert case.channel_names == ["T1post", "FLAIR"] and case.image.shape == (6, 8, 10)
    resampled = case.channels[0]
    assert resampled.shape == (6, 8, 10) and resampled.dtype == np.float32
    hu = flair_stored.astype(np.float32) - 1024.0
    np.testing.assert_allclose(resampled[0::2, 0::2, 1::2], hu, atol=1e-3)
    (q,) = {q["message"] for q in cat.quarantine() if q["reason"] == "missing_channel"}
    assert "FLAIR" in q and "T1post" in q
    rows = {r["description"]: r["status"] for r in cat.series_table()}
    assert rows == {"T1 GD": "ingested", "AX T2 FLAIR": "channel_source", "T1post": "quarantined"}
    out = export_nifti(ws, record.case_id, tmp_path, channel="FLAIR")
    assert out.name == f"{record.case_id}_FLAIR.nii.gz"
    with pytest.raises(KeyError, match="no channel 'T2'"):
        export_nifti(ws, record.case_id, tmp_path, channel="T2")


def test_every_channel_is_size_checked_before_decoding() -> None:
    from medseg.ingest.build import CaseJob, ChannelSource, build_case
    from medseg.io.dicom.frame import Frame

    def frames(n: int, rows: int, cols: int, folder: str) -> list[Frame]:
        return [Frame(f"/{folder}/{k}.dcm", 0, f"{folder}.{k}", (0.0, 0.0, float(k)), (1, 0, 0, 0, 1, 0),
                      (1.0, 1.0), rows, cols) for k in range(n)]

    g = Geometry.create([1.0, 1.0, 1.0], [0.0, 0.0, 0.0])
    big = ChannelSource(name="FLAIR", series_uid="2", frames=tuple(frames(100, 512, 512, "flair")), geometry=g)
    job = CaseJob(case_id="case_x", volume_path="/nonexistent/case_x.zarr", frames=frames(4, 8, 8, "t1"),
                  geometry=g, source={}, channel_names=("T1", "FLAIR"), extra_channels=[big])
    result = build_case(job, "secret-key", max_voxels=1_000_000)
    assert not result["ok"] and result["reason"] == "pixel_error"
    assert "/flair/0.dcm" in result["message"] and "100x512x512" in result["message"]


def test_msd_4d_image_channels_map_to_the_rules_by_dataset_json_modality(tmp_path: Path) -> None:
    import json

    import nibabel as nib

    from medseg.ingest.run import ingest
    from medseg.io.catalog import Catalog
    from medseg.workspace import Workspace

    def nii(path: Path, data: np.ndarray) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        nib.save(nib.Nifti1Image(data, np.diag([1.0, 1.0, 1.5, 1.0])), str(path))

    rng = np.random.default_rng(0)
    for task, modality in (("Task01_Brain", {"0": "FLAIR", "1": "T1w", "2": "t1gd", "3": "T2w"}),
                           ("Task09_Two", {"0": "T1w", "1": "FLAIR"})):  # no post-contrast T1, no T2
        root = tmp_path / "src" / task
        root.mkdir(parents=True)
        (root / "dataset.json").write_text(json.dumps(
            {"name": task, "modality": modality, "labels": {"0": "background", "1": "tumour"}}))
        nii(root / "imagesTr" / "b_001.nii.gz", rng.normal(size=(8, 9, 7, len(modality))).astype(np.float32))
        lab = np.zeros((8, 9, 7), np.uint8)
        lab[2:4, 2:5, 1:3] = 1
        nii(root / "labelsTr" / "b_001.nii.gz", lab)
    cfg = IngestConfig(deid_secret="channels-secret", channels=[ChannelRule(name="T1post", match="T1post|T1.*GD"),
                                                                 ChannelRule(name="FLAIR", match="FLAIR"),
                                                                 ChannelRule(name="T2", match="T2", exclude="FLAIR")])
    ws = Workspace.at(tmp_path / "ws")
    summary = ingest([tmp_path / "src"], ws, cfg)
    assert (summary.cases, summary.labeled_cases) == (1, 1)
    cat = Catalog(ws.catalog_path)
    (record,) = cat.cases()
    case = read_case(record.volume_path)
    four = np.asarray(nib.load(str(tmp_path / "src" / "Task01_Brain" / "imagesTr" / "b_001.nii.gz")).dataobj)
    assert case.channel_names == ["T1post", "FLAIR", "T2"]
    np.testing.assert_allclose(case.image, four[..., 2].transpose(2, 1, 0))  # t1gd: the reference channel
    np.testing.assert_allclose(case.channels[0], four[..., 0].transpose(2, 1, 0))  # FLAIR
    np.testing.assert_allclose(case.channels[1], four[..., 3].transpose(2, 1, 0))  # T2w
    assert case.labels["gt"].any()
    (q,) = [q for q in cat.quarantine() if q["reason"] == "missing_channel"]
    assert "Task09_Two" in q["path"] and "T1post, T2" in q["message"]
    plain = ingest([tmp_path / "src"], Workspace.at(tmp_path / "ws_plain"), IngestConfig(deid_secret="channels-secret"))
    assert plain.cases == 2  # without rules: first channel of each 4D image, as before
