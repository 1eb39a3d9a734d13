"""The catalog keeps one SQLite connection per thread and process; transactions stay atomic."""

from __future__ import annotations

import multiprocessing
import threading
from pathlib import Path

import pytest

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


def _count_in_child(cat: Catalog, out: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    cat.insert_file_rows([_row("/child")])
    out.put(len(cat.known_files()))


def test_a_forked_child_opens_its_own_connection(tmp_path: Path) -> None:
    cat = Catalog(tmp_path / "catalog.sqlite")
    cat.insert_file_rows([_row("/parent")])
    ctx = multiprocessing.get_context("fork")
    q = ctx.Queue()
    p = ctx.Process(target=_count_in_child, args=(cat, q))
    p.start()
    p.join(30)
    assert p.exitcode == 0 and q.get(timeout=5) == 2
    assert len(cat.known_files()) == 2  # the parent's connection still works and sees the child's row
