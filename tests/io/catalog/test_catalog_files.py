"""The catalog's ``files`` table (medseg.io.catalog.files): header dict <-> row, lookups, files no longer
seen under a source, and the study groups that must be planned together."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from catalog_rows import file_row_of as _row

from medseg.io.catalog import FILE_COLUMNS, Catalog, file_row, header_of_row


def test_a_header_survives_the_row_round_trip_and_lookups_see_size_and_mtime(tmp_path: Path) -> None:
    cat = Catalog(tmp_path / "catalog.sqlite")
    ok = {"path": "/src/a.dcm", "size": 10, "mtime_ns": 20, "status": "ok", "kind": "image", "sop_uid": "1.2.3",
          "series_uid": "1.2", "study_key": "study_x", "modality": "CT", "frames": [{"ipp": [0.0, 0.0, 1.5]}]}
    bad = {"path": "/src/b.txt", "size": 5, "mtime_ns": 6, "status": "quarantined", "reason": "not_dicom",
           "message": "/src/b.txt: not DICOM"}
    assert cat.insert_file_rows([file_row(ok, "run1"), file_row(bad, "run1")]) == 2
    (row,) = cat.file_header_rows()
    assert header_of_row(row) == {**ok, "reason": None, "message": None}
    assert [h["path"] for h in cat.file_headers("quarantined")] == ["/src/b.txt"]
    assert (cat.count_files(), cat.count_files("quarantined")) == (1, 1)
    assert cat.lookup_files(["/src/a.dcm", "/src/missing"]) == {"/src/a.dcm": (10, 20)}
    assert cat.delete_files(["/src/b.txt"]) == 1 and cat.known_files() == {"/src/a.dcm": (10, 20)}


def test_removed_files_are_found_with_and_without_the_count_shortcut(tmp_path: Path) -> None:
    cat = Catalog(tmp_path / "catalog.sqlite")
    cat.insert_file_rows([_row(p) for p in ("/src/a/1", "/src/a/2", "/src/b", "/src-other/c", "/srcx/d")])
    seen = ["/src/a/1", "/src/b"]
    assert cat.files_not_in(iter(seen), ["/src"]) == ["/src/a/2"]
    assert cat.files_not_in(iter(seen), ["/src"], n_seen=len(seen)) == ["/src/a/2"]  # counts differ: exact path
    everything = ["/src/a/1", "/src/a/2", "/src/b"]  # "/src-other" and "/srcx" are not under "/src"

    def must_not_be_read() -> list[str]:
        raise AssertionError("the shortcut should not read the scanned paths")

    assert cat.files_not_in(iter(must_not_be_read, None), ["/src"], n_seen=len(everything)) == []
    assert cat.files_not_in(iter(["/src/b"]), ["/src/b"], n_seen=1) == []  # a root that is a file


def test_objects_referencing_instances_only_join_the_studies_of_those_instances(tmp_path: Path) -> None:
    cat = Catalog(tmp_path / "catalog.sqlite")

    def row(path: str, kind: str, study: str, sop: str | None = None, header: dict[str, object] | None = None
            ) -> tuple[object, ...]:
        values: dict[str, object] = {"path": path, "size": 1, "mtime_ns": 2, "status": "ok", "kind": kind,
                                     "study_key": study, "sop_uid": sop, "series_uid": f"series-{study}",
                                     "header": json.dumps(header or {})}
        return tuple(values.get(c) for c in FILE_COLUMNS)

    cat.insert_file_rows([
        row("/a/1", "image", "A", "1.2.1"), row("/b/1", "image", "B", "1.2.2"), row("/c/1", "image", "C", "1.2.3"),
        row("/d/1", "image", "D", "1.2.4"),
        # an RTSTRUCT filed under study C that references an instance of study A only by its SOPInstanceUID
        row("/c/rt", "rtstruct", "C", "1.2.9", {"ref_sop_uids": ["1.2.1", "1.2.404"]}),
        row("/d/seg", "seg", "D", "1.2.8", {"ref_sop_uids": ["1.2.4"]}),  # its own study: no link
    ])
    assert cat.study_groups() == [["A", "C"], ["B"], ["D"]]
    with sqlite3.connect(tmp_path / "catalog.sqlite") as con:  # SOP UIDs are not indexed (see _reference_links)
        assert not con.execute("SELECT name FROM sqlite_master WHERE name = 'files_sop'").fetchall()
