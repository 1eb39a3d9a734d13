"""Ingest's scan and header phases (medseg.ingest.file_index): the source listing in a scratch file,
NIfTI/NRRD/dataset.json left out on request, only new or changed files selected, headers read once,
and scratch lists of a killed run removed."""

from __future__ import annotations

import os
from pathlib import Path

from dicom_factory import ct_slices, write

from medseg.config import IngestConfig
from medseg.ingest.file_index import clean_scratch, index_files, is_volume_file, scan_to_disk, select_unindexed
from medseg.io.catalog import Catalog
from medseg.runtime.scratch import read_scratch, write_scratch
from medseg.workspace import Workspace

CFG = IngestConfig(deid_secret="file-index-secret", files_per_batch=2)


def _source(root: Path) -> list[Path]:
    """Three CT slices, a NIfTI file and a dataset.json (the last two are not read by the scan)."""
    paths = write(ct_slices(n=3, seed=21)[0], root / "ct", names=["a.dcm", "b.dcm", "c.dcm"])
    (root / "vol").mkdir()
    (root / "vol" / "x.nii.gz").write_bytes(b"not read by the scan")
    (root / "vol" / "dataset.json").write_text("{}")
    return paths


def _listing(source: Path, scratch: Path) -> list[tuple[str, int, int]]:
    scan_to_disk([source], scratch)
    return list(read_scratch(scratch))


def test_volume_files_are_recognised_by_name() -> None:
    assert is_volume_file("/a/x.nii.gz") and is_volume_file("/a/x.nii") and is_volume_file("/a/x.nrrd")
    assert is_volume_file("/a/x.nhdr") and is_volume_file("/a/Task01/dataset.json")
    assert not is_volume_file("/a/x.dcm") and not is_volume_file("/a/x") and not is_volume_file("/a/dataset.json.bak")


def test_the_scan_lists_the_sources_and_selects_what_is_not_indexed(tmp_path: Path) -> None:
    slices = _source(tmp_path / "src")
    scratch, todo = tmp_path / "scan.pkl", tmp_path / "todo.pkl"
    assert scan_to_disk([tmp_path / "src"], scratch, volume_files=False) == (3, 2)
    assert [Path(p).name for p, _, _ in read_scratch(scratch)] == ["a.dcm", "b.dcm", "c.dcm"]
    assert scan_to_disk([tmp_path / "src"], scratch) == (5, 0)
    listed = list(read_scratch(scratch))
    assert [Path(p).name for p, _, _ in listed] == ["a.dcm", "b.dcm", "c.dcm", "dataset.json", "x.nii.gz"]
    st = os.stat(slices[0])
    assert listed[0] == (str(slices[0].resolve()), st.st_size, st.st_mtime_ns)

    catalog = Catalog(tmp_path / "catalog.sqlite")
    a, b = listed[0], listed[1]
    catalog.upsert_files([{"path": a[0], "size": a[1], "mtime_ns": a[2], "status": "ok"},  # indexed as it is
                          {"path": b[0], "size": b[1], "mtime_ns": b[2] - 1, "status": "ok"}], "run1")  # changed
    assert select_unindexed(catalog, scratch, todo) == 4
    assert [p for p, _, _ in read_scratch(todo)] == [p for p, _, _ in listed[1:]]


def test_headers_are_read_once_per_size_and_mtime(tmp_path: Path) -> None:
    _source(tmp_path / "src")
    ws = Workspace.at(tmp_path / "ws")
    items = [(p, s, m) for p, s, m in _listing(tmp_path / "src", tmp_path / "scan.pkl") if p.endswith(".dcm")]
    assert index_files(items, ws, CFG) == 3
    assert index_files(items, ws, CFG) == 0  # idempotent
    catalog = Catalog(ws.catalog_path)
    assert catalog.count_files() == 3 and {h["kind"] for h in catalog.file_headers()} == {"image"}
    path, size, mtime = items[1]
    assert index_files([(path, size, mtime + 1)], ws, CFG) == 1  # a changed file is read again


def test_scratch_lists_of_a_killed_run_are_removed(tmp_path: Path) -> None:
    ws = Workspace.at(tmp_path / "ws").ensure()
    for name in (".scan-run1.pkl", ".todo-run1.pkl", ".scan-run2.pkl"):
        write_scratch(ws.root / name, [("/src/a", 1, 2)])
    (ws.root / "keep.pkl").write_bytes(b"x")
    assert clean_scratch(ws) == 3
    assert sorted(p.name for p in ws.root.glob("*.pkl")) == ["keep.pkl"]
    assert clean_scratch(ws) == 0
