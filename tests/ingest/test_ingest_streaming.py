"""Ingest plans study by study and keeps file lists out of memory (peak memory flat in archive size)."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

import distributed
import numpy as np
import pytest
from dicom_factory import ct_slices, seg_for, write

import medseg.ingest.group_builds as run_module
import medseg.ingest.study_groups as study_groups
from medseg.config import IngestConfig
from medseg.ingest.run import ingest
from medseg.io.catalog import Catalog
from medseg.io.volume_store import read_case
from medseg.workspace import Workspace

CFG = IngestConfig(deid_secret="test-secret-123", files_per_batch=4)


def _archive(root: Path, studies: int) -> None:
    for i in range(studies):
        dss, _ = ct_slices(n=4, seed=i, patient_id=f"P{i}")
        write(dss, root / f"study{i}" / "ct")
        masks = np.zeros((4, 8, 10, 1), bool)
        masks[1:3, 2:5, 3:7, 0] = True
        seg_for(dss, masks).save_as(root / f"study{i}" / "seg.dcm")


@pytest.fixture
def planned_sizes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Number of headers handed to each planning call."""
    sizes: list[int] = []
    original = study_groups.plan_ingest

    def spy(headers: list[dict[str, Any]], *args: Any, **kwargs: Any) -> Any:
        sizes.append(len(headers))
        return original(headers, *args, **kwargs)

    monkeypatch.setattr(study_groups, "plan_ingest", spy)
    return sizes


def test_planning_sees_one_study_at_a_time(tmp_path: Path, planned_sizes: list[int]) -> None:
    _archive(tmp_path / "src", studies=5)
    ws = Workspace.at(tmp_path / "ws")
    s = ingest([tmp_path / "src"], ws, CFG)
    assert (s.cases, s.labeled_cases, s.quarantined) == (5, 5, 0)
    assert planned_sizes == [5] * 5  # 4 slices + 1 SEG per study, never the whole archive
    assert not list(ws.root.glob(".scan-*")) and not list(ws.root.glob(".todo-*"))  # scratch lists removed


def test_studies_sharing_a_series_or_referenced_by_a_seg_are_planned_together(tmp_path: Path) -> None:
    src = tmp_path / "src"
    a, _ = ct_slices(n=4, seed=1, patient_id="A")
    b, _ = ct_slices(n=4, seed=2, patient_id="B")
    write(a, src / "a")
    write(b, src / "b")
    masks = np.zeros((4, 8, 10, 1), bool)
    masks[1:3, 2:5, 3:7, 0] = True
    seg = seg_for(b, masks)
    seg.StudyInstanceUID = a[0].StudyInstanceUID  # a SEG filed under another study than its images
    seg.save_as(src / "seg.dcm")
    ws = Workspace.at(tmp_path / "ws")
    s = ingest([src], ws, CFG)
    assert (s.cases, s.labeled_cases, s.quarantined) == (2, 1, 0)
    groups = Catalog(ws.catalog_path).study_groups()
    assert len(groups) == 1 and len(groups[0]) == 2
    labeled = [c for c in Catalog(ws.catalog_path).cases() if c.has_labels]
    assert read_case(ws.volume_path(labeled[0].case_id)).labels["gt"].sum() == masks.sum()


def test_streaming_with_dask_matches_sequential(tmp_path: Path) -> None:
    _archive(tmp_path / "src", studies=4)
    seq, par = Workspace.at(tmp_path / "seq"), Workspace.at(tmp_path / "par")
    s1 = ingest([tmp_path / "src"], seq, CFG)
    with distributed.Client(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None) as client:
        s2 = ingest([tmp_path / "src"], par, CFG, client=client)
    assert (s1.cases, s1.labeled_cases) == (s2.cases, s2.labeled_cases) == (4, 4)
    rows1 = {c.case_id: c.model_dump() for c in Catalog(seq.catalog_path).cases()}
    rows2 = {c.case_id: c.model_dump() for c in Catalog(par.catalog_path).cases()}
    assert rows1.keys() == rows2.keys()
    for cid in rows1:
        np.testing.assert_array_equal(read_case(seq.volume_path(cid)).labels["gt"],
                                      read_case(par.volume_path(cid)).labels["gt"])


def _series_order(ws: Workspace) -> list[str]:
    with sqlite3.connect(ws.catalog_path) as con:
        return [r[0] for r in con.execute("SELECT series_key FROM series ORDER BY rowid")]


def test_groups_are_stored_in_study_order_whichever_worker_finishes_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _archive(tmp_path / "src", studies=4)
    seq, par = Workspace.at(tmp_path / "seq"), Workspace.at(tmp_path / "par")
    ingest([tmp_path / "src"], seq, CFG)
    calls = tmp_path / "calls"  # tasks are serialised: count them in a file, not a closure
    original = run_module.plan_and_build_pickled

    def first_task_slow(blob: bytes) -> bytes:
        with open(calls, "a+") as fh:
            fh.write("x")
            fh.seek(0)
            first = fh.read() == "x"
        if first:
            time.sleep(1.0)  # the first study's task finishes after the others
        return original(blob)

    monkeypatch.setattr(run_module, "plan_and_build_pickled", first_task_slow)
    one_group_per_task = CFG.model_copy(update={"files_per_batch": 1})
    with distributed.Client(n_workers=1, threads_per_worker=4, processes=False, dashboard_address=None) as client:
        s = ingest([tmp_path / "src"], par, one_group_per_task, client=client)
    assert s.cases == 4 and calls.read_text() == "xxxx"
    assert _series_order(par) == _series_order(seq)


def test_removed_files_are_found_without_listing_them_in_memory(tmp_path: Path) -> None:
    _archive(tmp_path / "src", studies=2)
    ws = Workspace.at(tmp_path / "ws")
    ingest([tmp_path / "src"], ws, CFG)
    for p in (tmp_path / "src" / "study1").rglob("*"):
        if p.is_file():
            p.unlink()
    s = ingest([tmp_path / "src"], ws, CFG)
    assert (s.files_removed, s.cases, s.volumes_removed) == (5, 1, 1)


def test_volume_files_switch_ignores_nifti_next_to_dicom(tmp_path: Path) -> None:
    from medseg.geometry import Geometry
    from medseg.io.nifti import write_nifti

    src = tmp_path / "src"
    dss, stored = ct_slices(n=4, seed=3)
    write(dss, src / "ct")
    write_nifti(src / "ct_converted.nii.gz", stored.astype(np.int16), Geometry.create((2.5, 0.6, 0.8), (0.0, 0.0, 0.0)))
    both = ingest([src], Workspace.at(tmp_path / "both"), CFG)
    assert (both.cases, both.files_ignored) == (2, 0)
    dicom_only = ingest([src], Workspace.at(tmp_path / "dicom"), CFG.model_copy(update={"volume_files": False}))
    assert (dicom_only.cases, dicom_only.files_ignored, dicom_only.files_seen) == (1, 1, 4)
    assert [c.modality for c in Catalog(tmp_path / "dicom" / "catalog.sqlite").cases()] == ["CT"]


def test_label_file_on_a_dicom_series_grid_becomes_its_label(tmp_path: Path) -> None:
    """A NIfTI/NRRD labelmap next to a DICOM series (Slicer/dcmqi export) labels that series, incrementally."""
    from medseg.io.nifti import write_nifti

    src = tmp_path / "src"
    dss, _ = ct_slices(n=4, seed=5)
    write(dss, src / "study" / "image")
    ws = Workspace.at(tmp_path / "ws")
    first = ingest([src], ws, CFG)
    assert (first.cases, first.labeled_cases) == (1, 0)
    case = read_case(ws.volume_path(Catalog(ws.catalog_path).cases()[0].case_id))
    label = np.zeros(case.image.shape, np.uint8)
    label[1:3, 2:6, 3:7] = 1
    write_nifti(src / "study" / "nrrd" / "liver_seg.nii.gz", label, case.geometry)
    second = ingest([src], ws, CFG)
    assert (second.cases, second.labeled_cases, second.series_ingested, second.quarantined) == (1, 1, 1, 0)
    rebuilt = read_case(ws.volume_path(case.case_id))
    np.testing.assert_array_equal(rebuilt.labels["gt"], label)
    assert rebuilt.label_names == {1: "liver"}
    rows = {r["kind"]: r for r in Catalog(ws.catalog_path).series_table()}
    assert rows["label_file"]["status"] == "label_source"


def test_label_file_matching_two_series_is_reported_not_guessed(tmp_path: Path) -> None:
    from medseg.io.nifti import write_nifti

    src = tmp_path / "src"
    a, _ = ct_slices(n=4, seed=6)
    b, _ = ct_slices(n=4, seed=7, study_uid=a[0].StudyInstanceUID)  # same grid, another series
    write(a, src / "a")
    write(b, src / "b")
    ws = Workspace.at(tmp_path / "ws")
    ingest([src], ws, CFG)
    geometry = read_case(ws.volume_path(Catalog(ws.catalog_path).cases()[0].case_id)).geometry
    write_nifti(src / "label.nii.gz", np.ones((4, 8, 10), np.uint8), geometry)
    s = ingest([src], ws, CFG)
    assert (s.cases, s.labeled_cases) == (2, 0)
    q = Catalog(ws.catalog_path).quarantine()
    assert [x["reason"] for x in q] == ["label_unmatched"]
    assert "2 DICOM series share its grid" in q[0]["message"]
