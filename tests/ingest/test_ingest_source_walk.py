"""The one walk of the ingest sources (medseg.ingest.source_walk): regular files sorted, link loops
followed once, and every entry that cannot be ingested reported with its reason.

The same walk inside whole ingests and the stage key is tested in test_ingest_sources.py."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from medseg.ingest.source_walk import SourceProblem, printable_path, walk_sources


def _entry(path: Path) -> tuple[str, int, int]:
    st = path.stat()
    return str(path), st.st_size, st.st_mtime_ns


@pytest.mark.timeout(30)
def test_regular_files_are_listed_once_and_other_entries_reported(tmp_path: Path) -> None:
    root = (tmp_path / "src").resolve()
    (root / "sub").mkdir(parents=True)
    for name, data in (("b.dcm", b"bb"), ("a.dcm", b"a"), ("sub/c.dcm", b"ccc")):
        (root / name).write_bytes(data)
    (root / "loop").symlink_to(".")  # a link loop: followed once
    (root / "sub" / "up").symlink_to("..")
    (root / "gone").symlink_to(root / "nowhere")
    os.mkfifo(root / "pipe")
    with open(os.fsencode(root) + b"/caf\xe9.dcm", "wb") as fh:
        fh.write(b"latin-1 name")
    os.mkdir(os.fsencode(root) + b"/d\xe9j")

    problems: list[SourceProblem] = []
    assert list(walk_sources([tmp_path / "src"], problems)) == [
        _entry(root / "a.dcm"), _entry(root / "b.dcm"), _entry(root / "sub" / "c.dcm")
    ]
    assert {(p.path, p.reason.value) for p in problems} == {
        (f"{root}/gone", "dangling_link"),
        (f"{root}/pipe", "special_file"),
        (f"{root}/caf\\xe9.dcm", "bad_file_name"),
        (f"{root}/d\\xe9j", "bad_file_name"),
    }
    row = next(p for p in problems if p.reason.value == "special_file").quarantine_row("run1")
    assert row["run_id"] == "run1" and row["series_uid"] is None and "FIFO" in str(row["message"])
    assert list(walk_sources([root / "a.dcm"])) == [_entry(root / "a.dcm")]  # a single-file source
    with pytest.raises(FileNotFoundError, match="does not exist"):
        list(walk_sources([tmp_path / "missing"]))


def test_undecodable_bytes_are_shown_as_escapes() -> None:
    assert printable_path(os.fsdecode(b"/src/caf\xe9/x.dcm")) == "/src/caf\\xe9/x.dcm"
    assert printable_path("/src/café/x.dcm") == "/src/café/x.dcm"
