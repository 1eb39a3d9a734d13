"""End-to-end ingest of small generated archives: volumes, labels, catalog, incremental reruns."""

from __future__ import annotations

import hashlib
import os
import sqlite3
from pathlib import Path

import distributed
import numpy as np
import pytest
from dicom_factory import ACCESSION, BIRTH_DATE, PATIENT_ID, PATIENT_NAME, ct_slices, seg_for, write

from medseg.config import IngestConfig
from medseg.deid import keyed_hash
from medseg.ingest.run import ingest
from medseg.io.catalog import Catalog
from medseg.io.volume_store import read_case
from medseg.workspace import Workspace

KEY = "test-secret-123"
CFG = IngestConfig(deid_secret=KEY, files_per_batch=3)


def _tree_digest(root: Path) -> dict[str, str]:
    return {
        str(p): hashlib.sha256(p.read_bytes()).hexdigest() + str(p.stat().st_mtime_ns)
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture
def archive(tmp_path: Path) -> dict[str, object]:
    """Two CT series (one with a SEG whose frames are in reverse order) plus junk files."""
    src = tmp_path / "archive"
    dss, stored = ct_slices(n=6, step=2.0, seed=1, description="abdomen")
    order = [3, 0, 5, 1, 4, 2]  # file names say nothing about slice order
    write([dss[i] for i in order], src / "p1" / "ct", names=[f"x{i}" for i in range(6)])
    masks = np.zeros((6, 8, 10, 2), dtype=bool)
    masks[1:4, 2:6, 3:8, 0] = True
    masks[2, 4:5, 4:6, 1] = True
    seg = seg_for(dss[::-1], masks[::-1], names=("liver", "tumor"))  # frames stored last slice first
    (src / "p1" / "seg").mkdir(parents=True)
    seg.save_as(src / "p1" / "seg" / "s.dcm")
    dss2, stored2 = ct_slices(n=4, step=3.0, seed=2, patient_id="OTHER-PATIENT", intercept=0.0)
    write(dss2, src / "p2")
    (src / "README.txt").write_text("not dicom")
    (src / "p2" / "junk.bin").write_bytes(os.urandom(300))
    return {"src": src, "dss": dss, "stored": stored, "masks": masks, "dss2": dss2, "stored2": stored2}


def test_ingest_builds_volumes_labels_and_catalog(tmp_path: Path, archive: dict[str, object]) -> None:
    src = archive["src"]
    assert isinstance(src, Path)
    before = _tree_digest(src)
    ws = Workspace.at(tmp_path / "ws")
    events: list[tuple[str, int, int]] = []
    s = ingest([src], ws, CFG, progress=lambda *a: events.append(a))
    assert (s.files_seen, s.files_indexed, s.files_skipped) == (13, 13, 0)
    assert (s.series_ingested, s.series_unchanged, s.cases, s.labeled_cases) == (2, 0, 2, 1)
    assert s.quarantined == 2  # README.txt + junk.bin
    assert {e[0] for e in events} >= {"scan", "headers", "volumes"}
    assert _tree_digest(src) == before  # inputs untouched

    cat = Catalog(ws.catalog_path)
    dss = archive["dss"]
    uid = dss[0].SeriesInstanceUID  # type: ignore[index]
    rec = cat.case(uid)
    assert rec.case_id == keyed_hash(KEY, uid, prefix="case_")
    assert rec.shape == (6, 8, 10) and rec.spacing == pytest.approx((2.0, 0.8, 0.6))
    assert rec.has_labels and rec.label_names == {1: "liver", 2: "tumor"}
    assert rec.patient_key == keyed_hash(KEY, PATIENT_ID, prefix="pat_")
    case = read_case(rec.volume_path)
    assert case.image.dtype == np.int16
    np.testing.assert_array_equal(case.image, np.asarray(archive["stored"]) - 1024)
    expected = np.zeros((6, 8, 10), np.uint8)
    masks = np.asarray(archive["masks"])
    expected[masks[..., 0]] = 1
    expected[masks[..., 1]] = 2  # higher segment wins overlaps
    np.testing.assert_array_equal(case.labels["gt"], expected)
    assert case.geometry.origin == pytest.approx((-10.0, -20.0, 30.0))
    assert case.source["label_source"] == "dicom_seg"
    assert case.source["series_uid"] == keyed_hash(KEY, uid, prefix="uid_", length=32)  # UIDs stay in the catalog
    attrs = b"".join(p.read_bytes() for p in Path(rec.volume_path).rglob("zarr.json"))
    assert uid.encode() not in attrs and dss[0].StudyInstanceUID.encode() not in attrs  # type: ignore[index]
    assert case.source["n_instances"] == 6

    reasons = {q["path"].rsplit("/", 1)[-1]: q["reason"] for q in cat.quarantine()}
    assert reasons == {"README.txt": "not_dicom", "junk.bin": "not_dicom"}
    table = {r["case_id"]: r for r in cat.series_table()}
    assert table[rec.case_id]["status"] == "ingested"
    assert any(r["kind"] == "seg" and r["status"] == "label_source" for r in table.values())


def test_catalog_holds_no_patient_identifiers(tmp_path: Path, archive: dict[str, object]) -> None:
    ws = Workspace.at(tmp_path / "ws")
    ingest([archive["src"]], ws, CFG)  # type: ignore[list-item]
    con = sqlite3.connect(ws.catalog_path)
    dump = "\n".join(con.iterdump())
    con.close()
    for secret in (PATIENT_NAME, PATIENT_ID, "OTHER-PATIENT", BIRTH_DATE, ACCESSION, "SECRET"):
        assert secret not in dump
    assert archive["dss"][0].SeriesInstanceUID in dump  # type: ignore[index]  # kept on purpose (SEG write-back)
    with sqlite3.connect(ws.catalog_path) as con:
        assert con.execute("PRAGMA user_version").fetchone()[0] == 1
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_rerun_is_incremental_and_new_series_only_is_built(tmp_path: Path, archive: dict[str, object]) -> None:
    src = archive["src"]
    assert isinstance(src, Path)
    ws = Workspace.at(tmp_path / "ws")
    ingest([src], ws, CFG)
    stores = {c.case_id: c.volume_path.stat().st_mtime_ns for c in Catalog(ws.catalog_path).cases()}

    again = ingest([src], ws, CFG)
    assert (again.files_indexed, again.files_skipped, again.series_ingested, again.series_unchanged) == (
        0,
        13,
        0,
        2,
    )
    assert again.cases == 2 and again.quarantined == 2
    assert {c.case_id: c.volume_path.stat().st_mtime_ns for c in Catalog(ws.catalog_path).cases()} == stores

    dss3, _ = ct_slices(n=3, seed=3)
    write(dss3, src / "p3")
    third = ingest([src], ws, CFG)
    assert (third.files_indexed, third.series_ingested, third.series_unchanged, third.cases) == (3, 1, 2, 3)

    # removing a slice changes the instance set: that series is rebuilt (and now too short)
    victim = sorted((src / "p3").iterdir())[0]
    victim.unlink()
    fourth = ingest([src], ws, CFG)
    assert fourth.files_removed == 1 and fourth.cases == 2 and fourth.volumes_removed == 1
    assert len(list(ws.volumes_dir.glob("*.zarr"))) == 2  # downstream stages list this folder
    assert any(q["reason"] == "too_few_slices" for q in Catalog(ws.catalog_path).quarantine())
    assert len(Catalog(ws.catalog_path).runs()) == 4


def test_incomplete_store_is_rebuilt(tmp_path: Path, archive: dict[str, object]) -> None:
    ws = Workspace.at(tmp_path / "ws")
    ingest([archive["src"]], ws, CFG)  # type: ignore[list-item]
    rec = Catalog(ws.catalog_path).cases()[0]
    import shutil

    shutil.rmtree(rec.volume_path)
    s = ingest([archive["src"]], ws, CFG)  # type: ignore[list-item]
    assert (s.series_ingested, s.series_unchanged) == (1, 1)
    assert rec.volume_path.is_dir()


def test_dask_client_gives_the_same_catalog(tmp_path: Path, archive: dict[str, object]) -> None:
    seq = Workspace.at(tmp_path / "seq")
    par = Workspace.at(tmp_path / "par")
    ingest([archive["src"]], seq, CFG)  # type: ignore[list-item]
    with distributed.Client(processes=False, n_workers=1, threads_per_worker=2, dashboard_address=":0") as client:
        s = ingest([archive["src"]], par, CFG, client=client)  # type: ignore[list-item]
    assert s.files_indexed == 13 and s.cases == 2
    a = {c.case_id: (c.shape, c.label_names) for c in Catalog(seq.catalog_path).cases()}
    b = {c.case_id: (c.shape, c.label_names) for c in Catalog(par.catalog_path).cases()}
    assert a == b
    for cid in a:
        np.testing.assert_array_equal(
            read_case(seq.volume_path(cid)).labels.get("gt", np.zeros(1)),
            read_case(par.volume_path(cid)).labels.get("gt", np.zeros(1)),
        )


def test_bad_seg_is_quarantined_but_image_still_ingested(tmp_path: Path) -> None:
    src = tmp_path / "a"
    dss, _ = ct_slices(n=4)
    write(dss, src / "ct")
    other, _ = ct_slices(n=4, origin=(0, 0, 500))  # SEG on another grid, but we lie about the series
    masks = np.ones((4, 8, 10, 1), bool)
    seg = seg_for(other, masks)
    seg.ReferencedSeriesSequence[0].SeriesInstanceUID = dss[0].SeriesInstanceUID
    seg.save_as(src / "seg.dcm")
    ws = Workspace.at(tmp_path / "ws")
    s = ingest([src], ws, CFG)
    assert s.cases == 1 and s.labeled_cases == 0
    q = Catalog(ws.catalog_path).quarantine()
    assert [x["reason"] for x in q] == ["seg_mismatch"]
    assert "seg.dcm" in q[0]["message"]


def test_missing_source_raises_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        ingest([tmp_path / "nope"], Workspace.at(tmp_path / "ws"), CFG)


def test_undecodable_pixels_quarantine_the_series_not_the_run(tmp_path: Path) -> None:
    src = tmp_path / "a"
    good, _ = ct_slices(n=3, seed=4)
    bad, _ = ct_slices(n=3, seed=5)
    bad[1].PixelData = bad[1].PixelData[:10]  # truncated pixel data
    write(good, src / "good")
    write(bad, src / "bad")
    ws = Workspace.at(tmp_path / "ws")
    s = ingest([src], ws, CFG)
    assert s.cases == 1
    q = Catalog(ws.catalog_path).quarantine()
    assert {x["reason"] for x in q} == {"pixel_error"}
    assert {x["path"] for x in q} == {str(p) for p in (src / "bad").iterdir()}
    assert any("bad" in x["message"] for x in q)
    rows = [r for r in Catalog(ws.catalog_path).series_table() if r["status"] == "quarantined"]
    assert [r["reason"] for r in rows] == ["pixel_error"]


def test_unusable_seg_series_row_is_quarantined_and_stays_so_on_rerun(tmp_path: Path) -> None:
    src = tmp_path / "a"
    dss, _ = ct_slices(n=4)
    write(dss, src / "ct")
    other, _ = ct_slices(n=4, origin=(0, 0, 500))
    seg = seg_for(other, np.ones((4, 8, 10, 1), bool))
    seg.ReferencedSeriesSequence[0].SeriesInstanceUID = dss[0].SeriesInstanceUID
    seg.save_as(src / "seg.dcm")
    ws = Workspace.at(tmp_path / "ws")
    for _ in range(2):
        ingest([src], ws, CFG)
        segs = [r for r in Catalog(ws.catalog_path).series_table() if r["kind"] == "seg"]
        assert [(r["status"], r["reason"]) for r in segs] == [("quarantined", "seg_mismatch")]
        assert [q["reason"] for q in Catalog(ws.catalog_path).quarantine()] == ["seg_mismatch"]
