"""Test helper: the catalog content of a workspace, comparable between runs (``import catalog_snapshot``)."""

from __future__ import annotations

import sqlite3
from typing import Any

from medseg.workspace import Workspace

_VOLATILE = {"run_id", "updated_at", "id"}


def catalog_snapshot(ws: Workspace) -> dict[str, list[tuple[Any, ...]]]:
    """Rows of files/series/quarantine/studies without run ids, timestamps and workspace location, sorted.

    Fails on duplicate rows, so two snapshots compare equal only when no row was written twice.
    """
    root = str(ws.root)
    out: dict[str, list[tuple[Any, ...]]] = {}
    with sqlite3.connect(ws.catalog_path) as con:
        for table in ("files", "series", "quarantine", "studies"):
            cur = con.execute(f"SELECT * FROM {table}")
            cols = [d[0] for d in cur.description]
            rows = [
                tuple(
                    str(v).replace(root, "<ws>") if isinstance(v, str) else v
                    for c, v in zip(cols, r, strict=True)
                    if c not in _VOLATILE
                )
                for r in cur.fetchall()
            ]
            assert len(rows) == len(set(rows)), f"duplicate rows in {table}"
            out[table] = sorted(rows, key=repr)
    return out
