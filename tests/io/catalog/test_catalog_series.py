"""Catalog run-state queries: the image series of a case and its source files (used to write DICOM SEG)."""

from __future__ import annotations

from pathlib import Path

import pytest

from medseg.io.catalog import Catalog, file_row


def _header(path: str, series: str, sop: str | None, status: str = "ok") -> dict[str, object]:
    return {"path": path, "size": 1, "mtime_ns": 2, "status": status, "kind": "image", "sop_uid": sop,
            "series_uid": series}


def test_image_series_files_prefers_the_ingested_stack_and_lists_its_ok_instances(tmp_path: Path) -> None:
    cat = Catalog(tmp_path / "catalog.sqlite")
    cat.insert_file_rows([file_row(h, "r1") for h in (
        _header("/a/1.dcm", "1.2", "1.2.1"),
        _header("/a/2.dcm", "1.2", "1.2.2"),
        _header("/a/3.dcm", "1.2", "1.2.3", status="quarantined"),
        _header("/a/4.dcm", "1.2", None),
        _header("/b/1.dcm", "9.9", "9.9.1"),
    )])
    cat.replace_run_state(
        [
            {"series_key": "k0", "case_id": "c1", "series_uid": "9.9", "kind": "image", "status": "quarantined"},
            {"series_key": "k1", "case_id": "c1", "series_uid": "1.2", "kind": "image", "status": "ingested"},
            {"series_key": "k2", "case_id": "c1", "series_uid": "5.5", "kind": "seg", "status": "label_source"},
        ],
        [],
        [],
    )
    reader = Catalog(tmp_path / "catalog.sqlite", create=False)
    row, files = reader.image_series_files("c1")
    assert row["series_key"] == "k1" and row["series_uid"] == "1.2"
    assert sorted(files) == [("/a/1.dcm", "1.2.1"), ("/a/2.dcm", "1.2.2")]
    with pytest.raises(KeyError):
        reader.image_series_files("missing")
