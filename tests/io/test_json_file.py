"""Atomic writes and the one schema-version check of versioned JSON documents."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from medseg.io.json_file import (
    SCHEMA_FIELD,
    SchemaVersionError,
    atomic_path,
    check_schema_version,
    read_json,
    read_versioned_json,
    write_json,
    write_text_atomic,
)


def test_write_json_replaces_atomically_and_leaves_no_temp_file(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "doc.json"
    write_json(path, {"a": 1})
    write_json(path, {"a": 2}, newline=True)
    assert read_json(path) == {"a": 2} and path.read_text().endswith("}\n")
    assert sorted(p.name for p in path.parent.iterdir()) == ["doc.json"]


def test_strict_json_refuses_nan(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        write_json(tmp_path / "x.json", {"v": math.nan}, allow_nan=False)
    assert list(tmp_path.iterdir()) == []


def test_exclusive_write_never_replaces(tmp_path: Path) -> None:
    path = tmp_path / "once.txt"
    assert write_text_atomic(path, "first", exclusive=True)
    assert not write_text_atomic(path, "second", exclusive=True)
    assert path.read_text() == "first" and list(tmp_path.iterdir()) == [path]


def test_atomic_path_keeps_the_old_file_when_the_writer_fails(tmp_path: Path) -> None:
    path = tmp_path / "data.bin"
    path.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_path(path) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("crash")
    assert path.read_bytes() == b"old" and list(tmp_path.iterdir()) == [path]
    with atomic_path(path) as tmp:
        tmp.write_bytes(b"new")
    assert path.read_bytes() == b"new"


def test_schema_version_check_names_file_and_both_versions(tmp_path: Path) -> None:
    check_schema_version({SCHEMA_FIELD: 1}, tmp_path / "p.json", 1)
    check_schema_version({"schema": 1}, tmp_path / "p.json", 1)  # the spelling of older files
    with pytest.raises(SchemaVersionError, match=r"p\.json: unsupported plan schema_version 2 .*reads 1"):
        check_schema_version({SCHEMA_FIELD: 2}, tmp_path / "p.json", 1, "plan")
    with pytest.raises(SchemaVersionError, match="None"):
        check_schema_version(json.loads("[]"), tmp_path / "p.json", 1)


def test_read_versioned_json(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"plan not found: .*\(run it\)"):
        read_versioned_json(tmp_path / "plan.json", 1, "plan", "run it")
    write_json(tmp_path / "plan.json", {SCHEMA_FIELD: 1, "x": 2})
    assert read_versioned_json(tmp_path / "plan.json", 1, "plan", "run it") == {SCHEMA_FIELD: 1, "x": 2}
    with pytest.raises(SchemaVersionError, match="reads 3"):
        read_versioned_json(tmp_path / "plan.json", 3, "plan", "run it")
