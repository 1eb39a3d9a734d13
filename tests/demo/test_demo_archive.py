"""End-to-end tests of the demo archive: valid DICOM, exact geometry/pixels/labels, determinism."""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest

from medseg.demo import DemoArchiveError, generate_demo_archive, load_manifest, phantom_for_case
from medseg.demo.manifest import DemoManifest

CASES = 4  # patients 0 (2 studies), 1 (1 study, oblique), 2 (1 study)


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, DemoManifest, list[tuple[int, int]]]:
    out = tmp_path_factory.mktemp("demo") / "archive"
    calls: list[tuple[int, int]] = []
    manifest = generate_demo_archive(out, cases=CASES, seed=11, progress=lambda d, t: calls.append((d, t)))
    return out, manifest, calls


def _hashes(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _series(root: Path) -> tuple[dict[str, list[pydicom.Dataset]], list[pydicom.Dataset]]:
    images: dict[str, list[pydicom.Dataset]] = defaultdict(list)
    segs: list[pydicom.Dataset] = []
    for path in root.rglob("*.dcm"):
        ds = pydicom.dcmread(path)
        if ds.Modality == "SEG":
            segs.append(ds)
        else:
            images[str(ds.SeriesInstanceUID)].append(ds)
    return images, segs


def _sorted_by_normal(datasets: list[pydicom.Dataset]) -> list[pydicom.Dataset]:
    iop = np.asarray(datasets[0].ImageOrientationPatient, float)
    normal = np.cross(iop[:3], iop[3:])
    return sorted(datasets, key=lambda ds: float(np.asarray(ds.ImagePositionPatient, float) @ normal))


def test_manifest_layout_and_progress(archive) -> None:
    out, manifest, calls = archive
    assert calls == [(i, CASES) for i in range(1, CASES + 1)]
    assert load_manifest(out) == manifest
    assert json.loads((out / "manifest.json").read_text())["generator"] == "medseg.demo"
    assert manifest.n_cases == CASES and manifest.n_patients == 3
    assert manifest.label_names == {1: "organ", 2: "lesion"}
    assert [c.oblique for c in manifest.cases] == [False, False, True, False]
    first, second = manifest.cases[0], manifest.cases[1]
    assert first.patient_id == second.patient_id and first.study_instance_uid != second.study_instance_uid
    assert second.study_date > first.study_date
    total = sum(p.stat().st_size for p in out.rglob("*.dcm"))
    assert manifest.total_bytes == total < 8_000_000
    for case in manifest.cases:
        folder = out / case.image_folder
        assert len(list(folder.glob("*.dcm"))) == case.n_image_files == case.shape[0]
        assert (out / case.seg_file).is_file()
        assert Path(case.seg_file).parent.parent == Path(case.image_folder).parent  # same study folder
        assert 24 <= case.shape[0] <= 48 and 96 <= case.shape[1] <= 128 and case.shape[1] == case.shape[2]
        assert 2.5 <= case.spacing[0] <= 5.0 and 0.9 <= case.spacing[1] <= 1.6


def test_every_file_is_valid_dicom_with_phi_to_remove(archive) -> None:
    out, manifest, _ = archive
    images, segs = _series(out)
    assert len(images) == len(segs) == CASES
    for datasets in images.values():
        for ds in datasets:
            assert ds.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
            assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
            assert ds.SOPClassUID == pydicom.uid.CTImageStorage
            assert str(ds.PatientName) and ds.PatientBirthDate and ds.AccessionNumber and ds.PatientID
    for case in manifest.cases:
        by_name = [
            int(pydicom.dcmread(p).InstanceNumber) for p in sorted((out / case.image_folder).glob("*.dcm"))
        ]
        assert by_name != sorted(by_name)  # file names do not give slice order
    assert len({str(s.SOPInstanceUID) for s in segs}) == CASES


@pytest.mark.parametrize("case_index", range(CASES))
def test_volume_geometry_and_labels_round_trip(archive, case_index: int) -> None:
    out, manifest, _ = archive
    case = manifest.cases[case_index]
    hu, label, geometry = phantom_for_case(11, case_index)
    assert geometry == case.geometry()
    datasets = _sorted_by_normal([pydicom.dcmread(p) for p in (out / case.image_folder).glob("*.dcm")])

    volume = np.stack(
        [ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept) for ds in datasets]
    )
    np.testing.assert_array_equal(volume, hu)

    rng = np.random.default_rng(case_index)
    for k, j, i in zip(*(rng.integers(0, n, 5) for n in hu.shape), strict=True):
        ds = datasets[k]
        iop = np.asarray(ds.ImageOrientationPatient, float)
        row_sp, col_sp = (float(v) for v in ds.PixelSpacing)
        lps = np.asarray(ds.ImagePositionPatient, float) + iop[:3] * col_sp * i + iop[3:] * row_sp * j
        np.testing.assert_allclose(lps, geometry.index_to_lps(np.array([k, j, i])), atol=1e-4)
    iop = np.asarray(datasets[0].ImageOrientationPatient, float)
    if case.oblique:
        assert not np.allclose(iop, [1, 0, 0, 0, 1, 0], atol=0.05)
        tilt = np.degrees(np.arccos(abs(np.cross(iop[:3], iop[3:])[2])))
        assert 0.0 < tilt <= 25.0 + 1e-6
    else:
        np.testing.assert_allclose(iop, [1, 0, 0, 0, 1, 0], atol=1e-12)

    # Independent geometry reader (highdicom) agrees with medseg.geometry.
    # highdicom stacks slices against the normal (head to feet): undo that flip before comparing.
    hd_volume = hd.get_volume_from_series(datasets)
    hd_affine, hd_array = hd_volume.affine, hd_volume.array
    if hd_affine[:3, 0] @ geometry.direction_matrix[:, 0] < 0:
        flip = np.eye(4)
        flip[0, 0], flip[0, 3] = -1.0, hu.shape[0] - 1
        hd_affine, hd_array = hd_affine @ flip, hd_array[::-1]
    np.testing.assert_allclose(hd_affine, geometry.affine_lps(), atol=1e-4)
    np.testing.assert_array_equal(hd_array, hu)

    seg = hd.seg.segread(out / case.seg_file)
    assert seg.SOPInstanceUID == case.seg_sop_instance_uid
    assert seg.StudyInstanceUID == case.study_instance_uid
    assert seg.FrameOfReferenceUID == datasets[0].FrameOfReferenceUID
    source_uids = [str(ds.SOPInstanceUID) for ds in datasets]
    referenced = {uid for _, _, uid in seg.get_source_image_uids()}
    assert referenced <= set(source_uids)
    seg_label = seg.get_pixels_by_source_instance(source_uids, combine_segments=True)
    np.testing.assert_array_equal(seg_label, label)
    assert {v: int((label == v).sum()) for v in (1, 2)} == case.label_voxels
    assert case.label_voxels[2] > 0 and case.lesion_count >= 1
    # lesions inside the organ: every lesion voxel's in-plane neighbours are labelled
    lesion = label == 2
    assert np.all(label[:, 1:-1, 1:-1][lesion[:, 2:, 1:-1] | lesion[:, :-2, 1:-1]] >= 1)


def test_same_seed_same_bytes_other_seed_different(archive, tmp_path: Path) -> None:
    out, _, _ = archive
    again = tmp_path / "again"
    generate_demo_archive(again, cases=CASES, seed=11)
    assert _hashes(again) == _hashes(out)
    other = tmp_path / "other"
    m_other = generate_demo_archive(other, cases=CASES, seed=12)
    first = load_manifest(out)
    assert {c.series_instance_uid for c in m_other.cases}.isdisjoint(
        c.series_instance_uid for c in first.cases
    )
    assert set(_hashes(other).values()).isdisjoint(_hashes(out).values())


def test_output_folder_rules(tmp_path: Path) -> None:
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(DemoArchiveError, match="not a previous medseg demo archive"):
        generate_demo_archive(foreign, cases=1)
    assert (foreign / "notes.txt").read_text() == "mine"

    empty = tmp_path / "empty"
    empty.mkdir()
    generate_demo_archive(empty, cases=1, seed=1)
    generate_demo_archive(empty, cases=2, seed=2)  # a previous demo archive is replaced
    assert load_manifest(empty).seed == 2 and len(load_manifest(empty).cases) == 2
    patients = {p.relative_to(empty).parts[0] for p in empty.rglob("*.dcm")}
    assert patients == {c.patient_id for c in load_manifest(empty).cases}  # the old patient folder is gone

    (empty / "extra.txt").write_text("x")
    with pytest.raises(DemoArchiveError, match="foreign entries"):
        generate_demo_archive(empty, cases=1)
    assert not list(tmp_path.glob(".*partial*"))
    with pytest.raises(ValueError, match="cases"):
        generate_demo_archive(tmp_path / "zero", cases=0)


def test_failed_generation_keeps_previous_archive(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "arch"
    generate_demo_archive(out, cases=1, seed=5)
    before = _hashes(out)

    def boom(*args: object, **kwargs: object) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr("medseg.demo.archive.build_seg", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        generate_demo_archive(out, cases=2, seed=6)
    assert _hashes(out) == before
    assert [p.name for p in tmp_path.iterdir()] == ["arch"]  # no partial folder left behind
