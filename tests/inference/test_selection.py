"""medseg.inference.selection: resolving a case selection, and its errors on an unprepared workspace."""

from __future__ import annotations

from pathlib import Path

import pytest

from medseg.inference.selection import has_prediction, ingested_case_ids, select_cases
from medseg.workspace import Workspace


def test_explicit_lists_and_errors_of_a_fresh_workspace(tmp_path: Path) -> None:
    ws = Workspace.at(tmp_path / "ws").ensure()
    assert select_cases(ws, ("b", "a"), "cnn", "v1") == ["b", "a"]
    with pytest.raises(ValueError, match="case selection must be"):
        select_cases(ws, "all", "cnn", "v1")
    with pytest.raises(FileNotFoundError, match="no splits"):
        select_cases(ws, "test", "cnn", "v1")
    with pytest.raises(FileNotFoundError, match="no catalog"):
        select_cases(ws, "pending", "cnn", "v1")
    with pytest.raises(FileNotFoundError, match="run `medseg ingest` first"):
        ingested_case_ids(ws)
    assert not has_prediction(ws.prediction_dir("cnn", "v1"), "case000", "cnn", "v1")
