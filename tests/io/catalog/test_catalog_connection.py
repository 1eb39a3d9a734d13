"""The catalog keeps one SQLite connection per process, shared by its threads; transactions stay atomic.

The ``files`` table's own queries are tested in test_catalog_files.py."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest
from catalog_rows import file_row_of as _row

from medseg.io.catalog import Catalog
from medseg.io.catalog import connection as catalog_module


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
