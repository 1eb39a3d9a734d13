"""The rows an ingest run stores at its end (medseg.ingest.run_rows): series and quarantine rows of a
built group, the label series of a failed image, the studies, the files' own quarantine rows, and the
stale volume stores removed."""

from __future__ import annotations

from pathlib import Path

from small_study import headers_of, small_study

from medseg.ingest.case_plan import plan_ingest
from medseg.ingest.run_rows import file_quarantine, finalise, prune_stale_volumes, studies_of
from medseg.io.catalog import Catalog
from medseg.workspace import Workspace

KEY = "run-rows-secret"


def test_finalise_stores_the_built_case_and_quarantines_the_labels_of_a_failed_one(tmp_path: Path) -> None:
    study = small_study(tmp_path / "src")
    ws = Workspace.at(tmp_path / "ws")
    plan = plan_ingest(headers_of(tmp_path / "src", KEY), ws, KEY)
    (pc,) = plan.cases
    cid = pc.job.case_id
    built = {cid: {"case_id": cid, "ok": True, "label_names": {1: "liver"}, "label_source": "dicom_seg",
                   "has_labels": True, "label_series_uids": [study.seg_uid], "label_errors": []}}
    rows, quarantine = finalise(plan, [pc], [], built, {}, "run1")
    by_uid = {r["series_uid"]: r for r in rows}
    image = by_uid[study.series_uid]
    assert (image["status"], image["content_hash"], image["volume_path"]) == ("ingested", pc.content_hash,
                                                                              pc.job.volume_path)
    assert image["has_labels"] and image["label_names"] == {"1": "liver"} and image["run_id"] == "run1"
    assert by_uid[study.seg_uid]["status"] == "label_source"
    assert [(q["path"], q["reason"]) for q in quarantine] == [(str(study.stray), "seg_unreferenced")]

    failed = {cid: {"case_id": cid, "ok": False, "reason": "pixel_error", "message": "truncated pixel data",
                    "label_errors": []}}
    rows, quarantine = finalise(plan, [pc], [], failed, {}, "run2")
    by_uid = {r["series_uid"]: r for r in rows}
    assert (by_uid[study.series_uid]["status"], by_uid[study.series_uid]["reason"]) == ("quarantined", "pixel_error")
    assert (by_uid[study.seg_uid]["status"], by_uid[study.seg_uid]["reason"]) == ("quarantined", "seg_unreferenced")
    assert "pixel_error" in by_uid[study.seg_uid]["message"]
    assert sorted((q["path"], q["reason"]) for q in quarantine) == sorted(
        [(str(p), "pixel_error") for p in study.slices]
        + [(str(study.seg), "seg_unreferenced"), (str(study.stray), "seg_unreferenced")]
    )
    assert {q["run_id"] for q in quarantine} == {"run2"}


def test_studies_count_their_series_and_come_sorted() -> None:
    rows = [{"study_key": "s2", "patient_key": "p1"}, {"study_key": "s1", "patient_key": "p1"},
            {"study_key": "s2", "patient_key": "p1"}, {"study_key": None}]
    assert studies_of(rows, "r") == [
        {"study_key": "s1", "patient_key": "p1", "n_series": 1, "run_id": "r"},
        {"study_key": "s2", "patient_key": "p1", "n_series": 2, "run_id": "r"},
    ]


def test_only_stores_of_cases_no_longer_ingested_inside_the_workspace_are_removed(tmp_path: Path) -> None:
    ws = Workspace.at(tmp_path / "ws")
    outside = tmp_path / "elsewhere" / "c_out.zarr"
    stores = {cid: ws.volume_path(cid) for cid in ("c_gone", "c_kept", "c_quarantined")}
    for path in [*stores.values(), outside]:
        path.mkdir(parents=True)
    previous = {
        "c_gone": {"status": "ingested", "volume_path": str(stores["c_gone"])},
        "c_kept": {"status": "ingested", "volume_path": str(stores["c_kept"])},
        "c_quarantined": {"status": "quarantined", "volume_path": str(stores["c_quarantined"])},
        "c_out": {"status": "ingested", "volume_path": str(outside)},
    }
    now = [{"case_id": "c_kept", "kind": "image", "status": "ingested"}]
    assert prune_stale_volumes(ws, previous, now) == 1
    assert not stores["c_gone"].exists()
    assert stores["c_kept"].is_dir() and stores["c_quarantined"].is_dir() and outside.is_dir()


def test_files_quarantined_when_read_keep_their_reason(tmp_path: Path) -> None:
    catalog = Catalog(tmp_path / "catalog.sqlite")
    catalog.upsert_files([{"path": "/src/notes.txt", "size": 5, "mtime_ns": 6, "status": "quarantined",
                           "reason": "not_dicom", "message": "/src/notes.txt: not DICOM"},
                          {"path": "/src/a.dcm", "size": 5, "mtime_ns": 6, "status": "ok", "kind": "image"}], "run1")
    assert file_quarantine(catalog, "run2") == [{"path": "/src/notes.txt", "series_uid": None, "case_id": None,
                                                 "reason": "not_dicom", "message": "/src/notes.txt: not DICOM",
                                                 "run_id": "run2"}]
