"""``medseg predict``: two DICOM studies and a NIfTI file in, one output per study out, each aligned with its input.

The fast tests call the Prefect task's function (``predict_task.fn``: no Prefect server) with ingest
in this process (no LocalCluster); the CLI test runs the whole command and is marked slow.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import highdicom as hd
import nibabel as nib
import numpy as np
import phantom_data as phantom
import pydicom
import pytest
import torch

import medseg.stages.ingest as ingest_stage
from medseg.config import MedsegConfig
from medseg.deid import keyed_hash
from medseg.demo.archive import generate_demo_archive
from medseg.demo.manifest import DemoManifest
from medseg.inference.input_cases import InputCase, InputInventory, name_outputs
from medseg.inference.predict_inputs import OutputFormat, parse_formats
from medseg.io.catalog import Catalog
from medseg.io.volume_store import read_case
from medseg.tasks.predict import predict_task
from medseg.training.bundle import save_bundle
from medseg.training.network import build_segmenter
from medseg.workspace import Workspace

SECRET = "predict-test-secret"
NIFTI_NAME = "ct_scan.nii.gz"
RAS_FROM_LPS = np.diag([-1.0, -1.0, 1.0, 1.0])


def _nifti_affine() -> np.ndarray:
    """An oblique affine (20 degrees about z), spacing x 1.0, y 1.2, z 3.0 mm: the prediction must keep it."""
    a = np.deg2rad(20.0)
    rot = np.array([[np.cos(a), -np.sin(a), 0.0], [np.sin(a), np.cos(a), 0.0], [0.0, 0.0, 1.0]])
    affine = np.eye(4)
    affine[:3, :3] = rot @ np.diag([1.0, 1.2, 3.0])
    affine[:3, 3] = (-20.0, 15.0, -30.0)
    return affine



@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Two DICOM studies (demo archive with DICOM SEG ground truth), one NIfTI file, a saved model bundle."""
    root = tmp_path_factory.mktemp("predict")
    manifest = generate_demo_archive(root / "in" / "archive", cases=2, seed=5)
    hu, _ = phantom.phantom_hu((20, 48, 48), 3, (3.0, 1.2, 1.0))
    nifti = root / "in" / NIFTI_NAME
    nib.save(nib.Nifti1Image(np.round(hu).astype(np.int16).transpose(2, 1, 0), _nifti_affine()), str(nifti))
    plan = phantom.make_plan()
    torch.manual_seed(0)
    net = build_segmenter(plan, deep_supervision=False)
    with torch.no_grad():  # as tests/stages/test_infer_stage.py: the untrained net then predicts some organ
        for param in net.parameters():
            param.mul_(0.1)
    bundle = save_bundle(Workspace.at(root / "site"), "cnn", plan, net.state_dict(), deep_supervision=False,
                         validation={"mean_dice": 0.1}, training={}, train_cases=[], val_cases=[],
                         history=[{"epoch": e, "loss": 1.0 / (e + 1), "val_dice": 0.1 * e} for e in range(3)])
    return {"root": root, "archive": root / "in" / "archive", "nifti": nifti, "manifest": manifest, "bundle": bundle}


@pytest.fixture()
def no_cluster(monkeypatch: pytest.MonkeyPatch) -> None:
    """Ingest in this process (no LocalCluster), as tests/ingest/test_ingest_sources.py does."""

    @contextlib.contextmanager
    def none(*_a: object, **_k: object) -> Iterator[None]:
        yield None

    monkeypatch.setattr(ingest_stage, "dask_client", none)


def _cfg(workspace: Path) -> MedsegConfig:
    return MedsegConfig.model_validate({
        "workspace": str(workspace), "ingest": {"deid_secret": SECRET, "files_per_batch": 64},
        "train": {"device": "cpu", "num_threads": 2}, "infer": {"overlap": 0.0},
    })


def _sop_uids(folder: Path) -> dict[str, pydicom.Dataset]:
    out = {}
    for path in sorted(folder.iterdir()):
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        out[str(ds.SOPInstanceUID)] = ds
    return out


def _labels_zyx(path: Path) -> tuple[np.ndarray, np.ndarray]:
    img = nib.load(str(path))
    return np.asarray(img.dataobj).transpose(2, 1, 0), np.asarray(img.affine)


def test_two_dicom_studies_and_a_nifti_file_give_three_aligned_outputs(
    inputs: dict[str, Any], no_cluster: None
) -> None:
    manifest: DemoManifest = inputs["manifest"]
    out = inputs["root"] / "out"
    outcome = predict_task.fn(_cfg(inputs["root"] / "site"), [str(inputs["archive"]), str(inputs["nifti"])],
                              str(out), str(inputs["bundle"]), "dicom-seg,nifti,zarr")
    stats = outcome.stats
    assert (stats["predicted"], stats["failed"], stats["problems"]) == (3, 0, [])
    predicted = {r["name"]: r for r in stats["rows"] if r["status"] == "predicted"}
    # names: the de-identified study keys medseg computes (a keyed hash of the StudyInstanceUID; of the
    # file's key for a NIfTI input), never an identifier of the input
    by_name = {keyed_hash(SECRET, c.study_instance_uid, prefix="study_"): c for c in manifest.cases}
    nifti_name = keyed_hash(SECRET, f"file:{NIFTI_NAME}", prefix="study_")
    assert set(predicted) == {*by_name, nifti_name}
    assert not list(out.glob(".medseg-predict-*"))  # the temporary workspace is gone
    assert (out / "predict.json").is_file()
    # each predicted case carries its QA score and flags (no fingerprint in the site workspace: no volume check)
    written = json.loads((out / "predict.json").read_text())
    assert any("no dataset fingerprint" in note for note in written["qa_notes"])
    for row in (r for r in written["rows"] if r["status"] == "predicted"):
        assert row["qa_score"] is not None and row["qa_flagged"] == (row["qa_score"] >= 1.0)
        assert bool(row["qa_reasons"]) == row["qa_flagged"]
    assert stats["qa_flagged"] == sum(r["qa_flagged"] for r in written["rows"])
    # what was not predicted, and why: the ground-truth SEG series are no images
    skipped = {r["reason"]: r for r in stats["rows"] if r["status"] == "skipped"}
    assert skipped["not_image"]["count"] == 2 and "seg series" in skipped["not_image"]["detail"]

    for name, case in by_name.items():
        assert sorted(p.name for p in out.glob(f"{name}*")) == [f"{name}.nii.gz", f"{name}.seg.dcm", f"{name}.zarr"]
        label, affine = _labels_zyx(out / f"{name}.nii.gz")
        np.testing.assert_allclose(affine, case.geometry().nifti_affine(), atol=1e-4)  # the input's affine
        assert label.shape == tuple(case.shape) and set(np.unique(label)) <= {0, 1, 2}
        np.testing.assert_array_equal(read_case(out / f"{name}.zarr").labels["pred"], label)
        # the SEG references exactly the source series' instances, and holds the NIfTI's labels slice by slice
        seg = hd.seg.segread(out / f"{name}.seg.dcm")
        sources = _sop_uids(inputs["archive"] / case.image_folder)
        assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == case.series_instance_uid
        refs = {str(i.ReferencedSOPInstanceUID) for i in seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence}
        assert refs == set(sources)
        uids = sorted(sources)
        mask = seg.get_pixels_by_source_instance(uids, combine_segments=True, skip_overlap_checks=True)
        inverse = np.linalg.inv(affine)
        for uid, frame in zip(uids, mask, strict=True):
            ras = RAS_FROM_LPS @ np.r_[np.asarray(sources[uid].ImagePositionPatient, float), 1.0]
            k = int(round(float((inverse @ ras)[2])))
            np.testing.assert_array_equal(frame, label[k])
    # the NIfTI input: NIfTI (the input's affine and shape) and Zarr, no SEG (and the row says why)
    assert sorted(p.name for p in out.glob(f"{nifti_name}*")) == [f"{nifti_name}.nii.gz", f"{nifti_name}.zarr"]
    assert "dicom-seg skipped: a NIfTI/NRRD input has no DICOM source" in predicted[nifti_name]["detail"]
    label, affine = _labels_zyx(out / f"{nifti_name}.nii.gz")
    source = nib.load(str(inputs["nifti"]))
    np.testing.assert_allclose(affine, source.affine, atol=1e-4)
    assert label.shape[::-1] == source.shape


def test_keep_names_into_a_kept_workspace(inputs: dict[str, Any], no_cluster: None) -> None:
    """--keep-names: StudyInstanceUIDs (the archive holds two studies) and the NIfTI's stem; --workspace is kept."""
    manifest: DemoManifest = inputs["manifest"]
    out, ws = inputs["root"] / "out-named", inputs["root"] / "ws"
    outcome = predict_task.fn(_cfg(ws), [str(inputs["archive"]), str(inputs["nifti"])], str(out),
                              str(inputs["bundle"]), "nifti", keep_names=True, temporary_workspace=False)
    assert outcome.stats["problems"] == []
    names = {c.study_instance_uid for c in manifest.cases} | {"ct_scan"}
    assert sorted(p.name for p in out.glob("*.nii.gz")) == sorted(f"{n}.nii.gz" for n in names)
    assert not list(out.glob("*.seg.dcm")) and not list(out.glob("*.zarr"))
    assert len(Catalog(Workspace.at(ws).catalog_path).cases()) == 3  # the given workspace keeps the cases


def test_an_input_without_anything_predictable_is_a_problem(inputs: dict[str, Any], no_cluster: None) -> None:
    junk = inputs["root"] / "junk"
    junk.mkdir()
    (junk / "notes.txt").write_text("not an image")
    outcome = predict_task.fn(_cfg(inputs["root"] / "site"), [str(inputs["nifti"]), str(junk)],
                              str(inputs["root"] / "out-junk"), str(inputs["bundle"]), "nifti")
    stats = outcome.stats
    assert (stats["predicted"], stats["failed"]) == (1, 0)
    assert stats["problems"] == [f"{junk.resolve()}: nothing predicted (not_dicom)"]
    row = next(r for r in stats["rows"] if r["input"] == str(junk.resolve()))
    assert row["status"] == "skipped" and "notes.txt" in row["detail"]


def test_a_missing_model_or_a_bad_format_is_named(inputs: dict[str, Any], no_cluster: None) -> None:
    from medseg.stages.infer import NoModelError

    with pytest.raises(NoModelError, match="no gan champion"):
        predict_task.fn(_cfg(inputs["root"] / "site"), [str(inputs["nifti"])], str(inputs["root"] / "o"), "gan")
    with pytest.raises(ValueError, match="unknown output format 'nii'.*dicom-seg, nifti, zarr"):
        parse_formats("nifti,nii")
    assert parse_formats(["zarr,nifti", "zarr"]) == [OutputFormat.ZARR, OutputFormat.NIFTI]


def test_names_are_unique_and_a_study_with_two_series_gets_one_output_each() -> None:
    def case(case_id: str, study: str, source: str, description: str = "") -> InputCase:
        return InputCase(case_id, source, study, f"{source}/{case_id}.dcm", True, description)

    a, b = "/no/such/a", "/no/such/b"
    inv = InputInventory([a, b], cases=[case("case_1", "study_x", a, "AX T1"), case("case_2", "study_x", a, "AX T1"),
                                        case("case_3", "study_y", b)])
    assert [c.name for c in name_outputs(inv, keep_names=False)] == [
        "study_x_case_1", "study_x_case_2", "study_y"]
    named = name_outputs(inv, keep_names=True, study_uid=lambda path: "1.2.3")
    # each input holds one study (a folder would give its name; these do not exist: the StudyInstanceUID)
    assert [c.name for c in named] == ["1.2.3_AX_T1", "1.2.3_AX_T1-2", "1.2.3"]


@pytest.mark.slow
def test_the_cli_prints_the_table_and_exits_1_for_an_input_without_images(
    inputs: dict[str, Any], prefect_harness: None
) -> None:
    """The whole command: Prefect flow, ingest on a LocalCluster, the rich table and the exit code."""
    from typer.testing import CliRunner

    from medseg.cli.main import app

    junk = inputs["root"] / "cli-junk"
    junk.mkdir()
    (junk / "readme.txt").write_text("no images here")
    out = inputs["root"] / "cli-out"
    common = ["-o", str(out), "--model", str(inputs["bundle"]), "--format", "nifti",
              "--set", f"workspace={inputs['root'] / 'site'}", "--set", f"ingest.deid_secret={SECRET}",
              "--set", "dask.n_workers=1", "--set", "train.device=cpu", "--set", "infer.overlap=0.0"]
    result = CliRunner().invoke(app, ["predict", "-i", str(inputs["nifti"]), "-i", str(junk), *common],
                                env={"COLUMNS": "300"})
    assert result.exit_code == 1, result.output
    assert "predicted 1, skipped 1, failed 0" in result.output and "not_dicom" in result.output
    assert "nothing predicted" in result.output
    assert (out / f"{keyed_hash(SECRET, f'file:{NIFTI_NAME}', prefix='study_')}.nii.gz").is_file()
    ok = CliRunner().invoke(app, ["predict", "-i", str(inputs["nifti"]), *common], env={"COLUMNS": "300"})
    assert ok.exit_code == 0, ok.output


def test_cases_fanned_out_over_two_workers_give_the_one_process_outputs(
    inputs: dict[str, Any], no_cluster: None
) -> None:
    """``infer.workers=2``: the three cases go to a LocalCluster of two workers (ingest stays in this process)."""
    args = [str(inputs["archive"]), str(inputs["nifti"])]
    runs = {}
    for workers in (1, 2):
        cfg = _cfg(inputs["root"] / "site")
        cfg = cfg.model_copy(update={"train": cfg.train.model_copy(update={"num_threads": 1}),
                                     "infer": cfg.infer.model_copy(update={"workers": workers})})
        out = inputs["root"] / f"out-{workers}"
        runs[workers] = (out, predict_task.fn(cfg, args, str(out), str(inputs["bundle"]), "nifti,zarr").stats)
    (one, single), (two, fanned) = runs[1], runs[2]
    assert (single["layout"], fanned["layout"]) == ("in-process", "LocalCluster 2 workers")
    assert (fanned["predicted"], fanned["failed"], fanned["problems"]) == (3, 0, [])

    def rows(stats: dict[str, Any], out: Path) -> list[tuple[str, str, str, list[str]]]:
        return [(r["name"], r["status"], r["detail"], [Path(f).relative_to(out).as_posix() for f in r["files"]])
                for r in stats["rows"]]

    assert rows(fanned, two) == rows(single, one)
    names = [r["name"] for r in single["rows"] if r["status"] == "predicted"]
    for name in names:  # the same label maps, and NIfTI files equal byte for byte
        assert (two / f"{name}.nii.gz").read_bytes() == (one / f"{name}.nii.gz").read_bytes()
        np.testing.assert_array_equal(read_case(two / f"{name}.zarr").labels["pred"],
                                      read_case(one / f"{name}.zarr").labels["pred"])
