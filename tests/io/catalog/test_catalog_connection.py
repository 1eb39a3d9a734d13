"""The catalog keeps one SQLite connection per process, shared by its threads; transactions stay atomic."""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from pathlib import Path

import pytest

from medseg.io.catalog import FILE_COLUMNS, Catalog
from medseg.io.catalog import connection as catalog_module


def _row(path: str) -> tuple[object, ...]:
    values: dict[str, object] = {"path": path, "size": 1, "mtime_ns": 2, "status": "ok", "kind": "image"}
    return tuple(values.get(c) for c in FILE_COLUMNS)


def test_threads_share_one_connection_and_their_transactions_do_not_interleave(tmp_path: Path) -> None:
    path = tmp_path / "catalog.sqlite"
    cat = Catalog(path)
    inside = threading.Event()
    release = threading.Event()

    def hold_a_transaction() -> None:
        with Catalog(path)._connect() as con:  # another Catalog object of the same file: same connection
            con.execute("INSERT INTO files (path, size, mtime_ns, status) VALUES ('/held', 1, 2, 'ok')")
            inside.set()
            release.wait(10)

    holder = threading.Thread(target=hold_a_transaction)
    holder.start()
    assert inside.wait(10)
    writer = threading.Thread(target=lambda: cat.insert_file_rows([_row("/after")]))
    writer.start()
    writer.join(0.3)
    assert writer.is_alive()  # waits for the other thread's transaction instead of joining it
    release.set()
    holder.join()
    writer.join()
    assert cat._connection() is Catalog(path)._connection()

    def write(k: int) -> None:
        for i in range(20):
            cat.insert_file_rows([_row(f"/t{k}/f{i}")])

    threads = [threading.Thread(target=write, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(Catalog(path).known_files()) == 82


def test_a_failed_transaction_rolls_back_nested_writes(tmp_path: Path) -> None:
    cat = Catalog(tmp_path / "catalog.sqlite")
    with pytest.raises(RuntimeError), cat._connect():
        cat.insert_file_rows([_row("/a")])  # nested: joins the outer transaction
        raise RuntimeError("boom")
    assert cat.known_files() == {}
    cat.insert_file_rows([_row("/b")])  # the connection is usable afterwards
    assert list(Catalog(tmp_path / "catalog.sqlite").known_files()) == ["/b"]


def test_a_forked_child_opens_its_own_connection(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cat = Catalog(tmp_path / "catalog.sqlite")
    cat.insert_file_rows([_row("/parent")])
    parent_con = cat._connection()
    assert cat._connection() is parent_con  # one connection per process
    real_pid = os.getpid()
    monkeypatch.setattr(os, "getpid", lambda: real_pid + 1)  # what a forked child sees
    child_con = cat._connection()
    assert child_con is not parent_con
    assert parent_con in catalog_module._INHERITED  # never closed in the child
    cat.insert_file_rows([_row("/child")])
    assert len(cat.known_files()) == 2


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
