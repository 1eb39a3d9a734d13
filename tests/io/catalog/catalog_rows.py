"""A minimal ``files`` table row for the catalog tests (test_catalog_connection.py, test_catalog_files.py)."""

from __future__ import annotations

from medseg.io.catalog import FILE_COLUMNS


def file_row_of(path: str) -> tuple[object, ...]:
    values: dict[str, object] = {"path": path, "size": 1, "mtime_ns": 2, "status": "ok", "kind": "image"}
    return tuple(values.get(c) for c in FILE_COLUMNS)
