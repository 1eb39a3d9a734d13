"""nnU-Net v2 raw dataset export (``medseg.io.nnunet_dataset``) and its reader, ingest: the round trip
export -> ingest gives the same images, labels and geometry (single- and multi-channel)."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from medseg.config import ChannelRule, IngestConfig
from medseg.geometry import Geometry
from medseg.ingest.export import export_nnunet_dataset
from medseg.ingest.run import ingest
from medseg.io.catalog import Catalog
from medseg.io.nnunet_dataset import DatasetCase, write_nnunet_dataset
from medseg.io.volume_store import CaseVolume, read_case, write_case
from medseg.splits import Splits
from medseg.workspace import Workspace

KEY = "nnunet-export-secret"
OBLIQUE = np.array([[0.97, -0.26, 0.0], [0.26, 0.97, 0.0], [0.0, 0.0, 1.0]])  # columns: z, y, x axes (LPS)


def _geometry(seed: int) -> Geometry:
    d, _ = np.linalg.qr(OBLIQUE)
    return Geometry.create(spacing=(2.5, 0.8 + 0.1 * seed, 0.7), origin=(-40.0 + seed, 12.0, 30.5), direction=d)


def _store(path: Path, seed: int, names: dict[int, str], channels: list[str] | None = None) -> CaseVolume:
    rng = np.random.default_rng(seed)
    shape = (6, 9, 11)
    image = rng.integers(-500, 800, shape).astype(np.int16)
    label = np.zeros(shape, np.uint8)
    for value in names:
        label[value : value + 2, 2:5, 3 + value : 6 + value] = value
    extra = [rng.normal(size=shape).astype(np.float32) for _ in (channels or [])[1:]]
    case = CaseVolume(path.stem, image, _geometry(seed), labels={"gt": label}, label_names=names,
                      channels=extra, channel_names=list(channels or []))
    write_case(path, case)
    return case


def _same_geometry(a: Geometry, b: Geometry) -> None:
    np.testing.assert_allclose(a.spacing, b.spacing, atol=1e-4)
    np.testing.assert_allclose(a.origin, b.origin, atol=1e-3)
    np.testing.assert_allclose(a.direction_matrix, b.direction_matrix, atol=1e-5)


def test_writer_renumbers_labels_by_name_and_checks_its_input(tmp_path: Path) -> None:
    a = _store(tmp_path / "a.zarr", 0, {1: "liver", 2: "tumour"})
    _store(tmp_path / "b.zarr", 1, {1: "tumour"})  # a DICOM SEG numbers its own segments
    root = tmp_path / "Dataset007_Test"
    summary = write_nnunet_dataset(root, [DatasetCase("a", tmp_path / "a.zarr"), DatasetCase("b", tmp_path / "b.zarr")],
                                   channel_names=["CT"])
    doc = json.loads((root / "dataset.json").read_text())
    assert doc == {"channel_names": {"0": "CT"}, "labels": {"background": 0, "liver": 1, "tumour": 2},
                   "numTraining": 2, "file_ending": ".nii.gz", "name": "Dataset007_Test", "description": ""}
    assert summary.training == ["a", "b"] and not (root / "imagesTs").exists()
    b_label = np.asarray(nib.load(str(root / "labelsTr" / "b.nii.gz")).dataobj).transpose(2, 1, 0)
    assert set(np.unique(b_label)) == {0, 2}  # tumour is 2 in this dataset
    a_image = nib.load(str(root / "imagesTr" / "a_0000.nii.gz"))
    np.testing.assert_array_equal(np.asarray(a_image.dataobj).transpose(2, 1, 0), a.image)
    np.testing.assert_allclose(a_image.affine, a.geometry.nifti_affine(), atol=1e-5)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no partial folder left
    with pytest.raises(FileExistsError, match="exists"):
        write_nnunet_dataset(root, [DatasetCase("a", tmp_path / "a.zarr")], channel_names=["CT"])
    with pytest.raises(ValueError, match="channel suffix"):
        write_nnunet_dataset(tmp_path / "x", [DatasetCase("a_0001", tmp_path / "a.zarr")])
    _store(tmp_path / "m.zarr", 2, {1: "liver"}, channels=["T1", "T2"])
    with pytest.raises(ValueError, match="channels"):
        write_nnunet_dataset(tmp_path / "y", [DatasetCase("m", tmp_path / "m.zarr")], channel_names=["CT"])
    assert not (tmp_path / "y").exists()


def test_workspace_export_ingests_back_to_the_same_cases(tmp_path: Path) -> None:
    """Single channel: labeled cases train, the held-out test split and unlabeled cases go to imagesTs."""
    src = tmp_path / "src" / "Dataset001_Src"
    (src / "imagesTr").mkdir(parents=True)
    (src / "dataset.json").write_text(json.dumps({"channel_names": {"0": "CT"}, "numTraining": 3, "file_ending":
                                                  ".nii.gz", "labels": {"background": 0, "organ": 1, "lesion": 2}}))
    from medseg.io.nifti import write_nifti

    for i in range(4):
        case = _store(tmp_path / "tmp" / f"c{i}.zarr", i, {1: "organ", 2: "lesion"})
        write_nifti(src / "imagesTr" / f"c{i}_0000.nii.gz", case.image, case.geometry)
        if i < 3:  # c3 has no labels
            write_nifti(src / "labelsTr" / f"c{i}.nii.gz", case.labels["gt"], case.geometry)
    cfg = IngestConfig(deid_secret=KEY, files_per_batch=8)
    ws = Workspace.at(tmp_path / "ws")
    assert ingest([tmp_path / "src"], ws, cfg).labeled_cases == 3
    before = {r.case_id: r for r in Catalog(ws.catalog_path).cases()}
    held = sorted(c for c, r in before.items() if r.has_labels)[0]
    Splits(train=[c for c in before if c != held], val=[], test=[held]).save(ws.splits_path)

    out = tmp_path / "raw" / "Dataset501_Back"
    summary = export_nnunet_dataset(ws, out)
    assert len(summary.training) == 2 and held in summary.test and len(summary.test) == 2
    assert (out / "labelsTs" / f"{held}.nii.gz").is_file()  # the held-out case keeps its labels (for evaluation)
    doc = json.loads((out / "dataset.json").read_text())
    assert doc["channel_names"] == {"0": "CT"} and doc["numTraining"] == 2 and doc["file_ending"] == ".nii.gz"
    assert doc["labels"] == {"background": 0, "organ": 1, "lesion": 2}

    ws2 = Workspace.at(tmp_path / "ws2")
    back = ingest([out], ws2, cfg)
    assert (back.cases, back.labeled_cases) == (4, 3)
    by_name = {r.description.removesuffix("_0000"): r for r in Catalog(ws2.catalog_path).cases()}
    for case_id, rec in before.items():
        a, b = read_case(rec.volume_path), read_case(by_name[case_id].volume_path)
        np.testing.assert_array_equal(a.image, b.image)
        _same_geometry(a.geometry, b.geometry)
        assert b.labels.keys() == a.labels.keys() and by_name[case_id].modality == "CT"
        if a.labels:
            np.testing.assert_array_equal(a.labels["gt"], b.labels["gt"])
            assert b.label_names == a.label_names


def test_multi_channel_export_ingests_back_with_the_channel_rules(tmp_path: Path) -> None:
    """nnU-Net v2 per-channel files (_0000, _0001, _0002) map onto ingest.channels by channel_names."""
    channels = ["T1post", "FLAIR", "T2"]
    cases = [_store(tmp_path / f"m{i}.zarr", i, {1: "tumour"}, channels=channels) for i in range(2)]
    out = tmp_path / "Dataset002_Multi"
    write_nnunet_dataset(out, [DatasetCase(f"m{i}", tmp_path / f"m{i}.zarr") for i in range(2)], channel_names=channels)
    assert sorted(p.name for p in (out / "imagesTr").iterdir()) == [f"m{i}_{k:04d}.nii.gz" for i in range(2)
                                                                    for k in range(3)]
    rules = [ChannelRule(name="T1post", match="T1.*GD"),  # picked by its name, not its regex
             ChannelRule(name="FLAIR", match="FLAIR"), ChannelRule(name="T2", match="T2", exclude="FLAIR")]
    ws = Workspace.at(tmp_path / "ws")
    summary = ingest([out], ws, IngestConfig(deid_secret=KEY, channels=rules))
    cat = Catalog(ws.catalog_path)
    assert (summary.cases, summary.labeled_cases) == (2, 2) and not cat.quarantine()
    for rec in cat.cases():
        back = read_case(rec.volume_path)
        orig = cases[int(rec.description[1])]
        assert back.channel_names == channels
        np.testing.assert_array_equal(back.image, orig.image)
        for got, want in zip(back.channels, orig.channels, strict=True):
            np.testing.assert_allclose(got, want, rtol=1e-6)
        np.testing.assert_array_equal(back.labels["gt"], orig.labels["gt"])
        _same_geometry(back.geometry, orig.geometry)
    again = ingest([out], ws, IngestConfig(deid_secret=KEY, channels=rules))
    assert again.series_unchanged == 2 and again.series_ingested == 0
    plain = ingest([out], Workspace.at(tmp_path / "plain"), IngestConfig(deid_secret=KEY))
    assert plain.cases == 2  # without rules: channel 0 only, the other files are quarantined extra_channel
    reasons = [q["reason"] for q in Catalog(Workspace.at(tmp_path / "plain").catalog_path).quarantine()]
    assert reasons == ["extra_channel"] * 4
