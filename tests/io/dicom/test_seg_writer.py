"""DICOM SEG of predictions on the demo archive (axial and oblique series): read back voxel for voxel."""

from __future__ import annotations

from pathlib import Path

import highdicom as hd
import numpy as np
import phantom_data as phantom
import pydicom
import pytest
import torch

from medseg.config import IngestConfig, MedsegConfig
from medseg.demo.archive import generate_demo_archive
from medseg.geometry import Geometry
from medseg.inference.predict import predict_case
from medseg.ingest.run import ingest
from medseg.io.catalog import Catalog
from medseg.io.dicom.seg_writer import (
    DicomSourceUnavailable,
    build_prediction_seg,
    find_dicom_source,
    seg_path,
    write_seg_atomic,
)
from medseg.io.volume_store import CaseVolume, read_case, read_meta, write_case
from medseg.training.bundle import ModelBundle
from medseg.workspace import Workspace

VERSION = "20260101T000000000000Z-0123abcd"


class BrightIsOrgan(torch.nn.Module):
    """Oracle: class 1 where the normalised intensity is > 0 (HU > 80), else background."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([torch.zeros_like(x), 20 * x, torch.full_like(x, -50.0)], dim=1)


@pytest.fixture(scope="module")
def demo_ws(tmp_path_factory: pytest.TempPathFactory) -> tuple[Workspace, dict[str, bool]]:
    """3 demo cases (case index 2 is oblique) ingested; returns the workspace and {case_id: oblique}."""
    root = tmp_path_factory.mktemp("demo")
    manifest = generate_demo_archive(root / "archive", cases=3, seed=5)
    ws = Workspace.at(root / "ws")
    ingest([root / "archive"], ws, IngestConfig(deid_secret="demo-secret", files_per_batch=64))
    cat = Catalog(ws.catalog_path)
    oblique = {cat.case(c.series_instance_uid).case_id: c.oblique for c in manifest.cases}
    assert sum(oblique.values()) == 1
    return ws, oblique


def _bundle() -> ModelBundle:
    return ModelBundle(path=Path("."), family="cnn", version=VERSION, plan=phantom.make_plan(),
                       network=BrightIsOrgan(), metadata={})


def _frame_refs(seg: pydicom.Dataset) -> list[tuple[str, list[float]]]:
    """(referenced source SOPInstanceUID, ImagePositionPatient) of every SEG frame."""
    out = []
    for item in seg.PerFrameFunctionalGroupsSequence:
        uid = item.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
        out.append((str(uid), [float(v) for v in item.PlanePositionSequence[0].ImagePositionPatient]))
    return out


def test_prediction_seg_reads_back_voxel_for_voxel(demo_ws: tuple[Workspace, dict[str, bool]], tmp_path: Path) -> None:
    ws, oblique = demo_ws
    cfg = MedsegConfig.model_validate({"infer": {"dicom_seg": True}})
    for case_id, is_oblique in oblique.items():
        out_dir = tmp_path / case_id
        out_dir.mkdir()
        path = predict_case(ws, cfg, _bundle(), case_id, out_dir, torch.device("cpu"))
        native = read_case(ws.volume_path(case_id), labels=False)
        study_key = Catalog(ws.catalog_path).case(case_id).study_key
        assert path == seg_path(out_dir, study_key, case_id) == out_dir / "dicom-seg" / study_key / case_id / "seg.dcm"
        label = read_case(out_dir / f"{case_id}.zarr").labels["pred"]
        assert 0.01 < (label == 1).mean() < 0.5  # a real organ prediction, not an empty map
        assert read_meta(out_dir / f"{case_id}.zarr")["source"]["dicom_seg"] == str(path)

        # pydicom: a Segmentation referencing exactly the source instances, recording the model version
        ds = pydicom.dcmread(path)
        assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.66.4" and ds.SegmentationType == "BINARY"
        src = find_dicom_source(ws.catalog_path, case_id, native.geometry, native.image.shape)
        catalog_uids = set(Catalog(ws.catalog_path).series_rows()[case_id]["sop_uids"].strip("[]").replace('"', "")
                           .replace(" ", "").split(","))
        refs = ds.ReferencedSeriesSequence[0].ReferencedInstanceSequence
        referenced = {str(i.ReferencedSOPInstanceUID) for i in refs}
        assert referenced == set(src.sop_uids) == catalog_uids
        assert ds.ReferencedSeriesSequence[0].SeriesInstanceUID == src.series_uid
        assert VERSION in ds.SeriesDescription and VERSION in ds.SoftwareVersions and VERSION in ds.ContentDescription
        assert str(ds.ContentCreatorName) == "medseg^cnn"
        segments = {int(s.SegmentNumber): s for s in ds.SegmentSequence}
        assert [s.SegmentLabel for s in segments.values()] == ["organ", "lesion"]
        assert segments[1].SegmentAlgorithmType == "AUTOMATIC"
        assert segments[1].SegmentationAlgorithmIdentificationSequence[0].AlgorithmVersion == VERSION

        # geometry: every frame lies on the slice of the volume its source instance was stacked at,
        # with the source orientation (axial and oblique alike)
        z_of_uid = {ds_.SOPInstanceUID: ks[0] for ds_, ks in zip(src.datasets, src.frame_slices, strict=True)}
        for uid, ipp in _frame_refs(ds):
            np.testing.assert_allclose(native.geometry.index_to_lps(np.array([z_of_uid[uid], 0, 0])), ipp, atol=1e-3)
        d = native.geometry.direction_matrix
        iop = ds.SharedFunctionalGroupsSequence[0].PlaneOrientationSequence[0].ImageOrientationPatient
        np.testing.assert_allclose(iop, [*d[:, 2], *d[:, 1]], atol=1e-5)
        assert bool(abs(d[2, 0]) < 0.999) == is_oblique

        # highdicom: the mask equals the predicted label volume voxel for voxel ((z, y, x), slice order
        # = the volume's z order, which is not the file order)
        seg = hd.seg.segread(path)
        mask = seg.get_pixels_by_source_instance(src.sop_uids, combine_segments=True, skip_overlap_checks=True)
        assert mask.shape == label.shape
        np.testing.assert_array_equal(mask, label)


def test_two_class_seg_of_the_oblique_case(demo_ws: tuple[Workspace, dict[str, bool]], tmp_path: Path) -> None:
    ws, oblique = demo_ws
    case_id = next(c for c, o in oblique.items() if o)
    case = read_case(ws.volume_path(case_id))
    gt = case.labels["gt"]
    assert set(np.unique(gt)) == {0, 1, 2}
    src = find_dicom_source(ws.catalog_path, case_id, case.geometry, gt.shape)
    seg = build_prediction_seg(src, gt, {1: "organ", 2: "lesion"}, "gan", VERSION)
    path = write_seg_atomic(seg, tmp_path / "seg.dcm")
    assert [p.name for p in tmp_path.iterdir()] == ["seg.dcm"]  # no temporary left behind
    back = hd.seg.segread(path)
    mask = back.get_pixels_by_source_instance(src.sop_uids, combine_segments=True, skip_overlap_checks=True)
    np.testing.assert_array_equal(mask, gt)
    # physical space: every voxel of the SEG volume maps onto the same label of our (z, y, x) volume
    vol = back.get_volume(combine_segments=True)
    idx = np.argwhere(vol.array > 0)
    lps = np.c_[idx, np.ones(len(idx))] @ np.asarray(vol.affine).T
    ours = np.rint(case.geometry.lps_to_index(lps[:, :3])).astype(int)
    np.testing.assert_array_equal(gt[tuple(ours.T)], vol.array[tuple(idx.T)])
    # class values need not be 1..N: segment numbers are assigned in class order
    relabelled = np.where(gt == 2, 5, gt).astype(np.uint8)
    seg5 = build_prediction_seg(src, relabelled, {1: "organ", 5: "lesion"}, "gan", VERSION)
    assert [int(s.SegmentNumber) for s in seg5.SegmentSequence] == [1, 2]
    with pytest.raises(ValueError, match="label values \\[7\\] are not classes"):
        build_prediction_seg(src, np.full_like(gt, 7), {1: "organ"}, "gan", VERSION)


def test_empty_prediction_still_writes_a_seg(demo_ws: tuple[Workspace, dict[str, bool]], tmp_path: Path) -> None:
    ws, oblique = demo_ws
    case_id = next(iter(oblique))
    case = read_case(ws.volume_path(case_id), labels=False)
    src = find_dicom_source(ws.catalog_path, case_id, case.geometry, case.image.shape)
    empty = np.zeros(case.image.shape, np.uint8)
    path = write_seg_atomic(build_prediction_seg(src, empty, {1: "organ", 2: "lesion"}, "cnn", VERSION),
                            tmp_path / "seg.dcm")
    mask = hd.seg.segread(path).get_pixels_by_source_instance(src.sop_uids, combine_segments=True)
    assert mask.shape == empty.shape and not mask.any()


def test_nifti_cases_are_skipped_with_a_reason(tmp_path: Path) -> None:
    ws = Workspace.at(tmp_path / "ws").ensure()
    geometry = Geometry.create((3.0, 1.2, 1.0), (0.0, 0.0, 0.0))
    hu, _ = phantom.phantom_hu((20, 48, 48), 0, (3.0, 1.2, 1.0))
    write_case(ws.volume_path("case_nii"), CaseVolume("case_nii", np.round(hu).astype(np.int16), geometry))
    Catalog(ws.catalog_path).replace_run_state(
        [{"series_key": "case_nii", "case_id": "case_nii", "series_uid": "file:imagesTr/a.nii.gz", "kind": "image",
          "study_key": "study_x", "status": "ingested", "volume_path": str(ws.volume_path("case_nii")),
          "shape": [20, 48, 48], "spacing": [3.0, 1.2, 1.0], "sop_uids": []}],
        [], [],
    )
    with pytest.raises(DicomSourceUnavailable, match="NIfTI/NRRD"):
        find_dicom_source(ws.catalog_path, "case_nii", geometry, (20, 48, 48))
    out = tmp_path / "out"
    out.mkdir()
    cfg = MedsegConfig.model_validate({"infer": {"dicom_seg": True}})
    assert predict_case(ws, cfg, _bundle(), "case_nii", out, torch.device("cpu")) is None
    assert read_meta(out / "case_nii.zarr")["source"]["dicom_seg"].startswith("skipped: case case_nii was imported")
    assert not (out / "dicom-seg").exists() and (out / "case_nii.nii.gz").is_file()
    with pytest.raises(DicomSourceUnavailable, match="not in the catalog"):
        find_dicom_source(ws.catalog_path, "case_other", geometry, (20, 48, 48))
