"""The catalog keeps one SQLite connection per thread and process; transactions stay atomic."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from medseg.ingest import catalog as catalog_module
from medseg.ingest.catalog import FILE_COLUMNS, Catalog


def _row(path: str) -> tuple[object, ...]:
    values: dict[str, object] = {"path": path, "size": 1, "mtime_ns": 2, "status": "ok", "kind": "image"}
    return tuple(values.get(c) for c in FILE_COLUMNS)


def test_threads_write_through_their_own_connections(tmp_path: Path) -> None:
    cat = Catalog(tmp_path / "catalog.sqlite")

    def write(k: int) -> None:
        for i in range(20):
            cat.insert_file_rows([_row(f"/t{k}/f{i}")])

    threads = [threading.Thread(target=write, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(Catalog(tmp_path / "catalog.sqlite").known_files()) == 80


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
    assert cat._connection() is parent_con  # one connection per thread and process
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
