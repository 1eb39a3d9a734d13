"""medseg.workspace: where every stage reads and writes inside a workspace."""

from __future__ import annotations

from pathlib import Path

from medseg.workspace import Workspace


def test_paths_of_a_workspace(tmp_path: Path) -> None:
    ws = Workspace.at(tmp_path / "x" / ".." / "ws")
    root = (tmp_path / "ws").resolve()
    assert ws.root == root
    assert ws.catalog_path == root / "catalog.sqlite"
    assert ws.volume_path("c1") == root / "volumes" / "c1.zarr"
    assert ws.preprocessed_case_path("c1") == root / "preprocessed" / "cases" / "c1.zarr"
    assert (ws.plan_path, ws.splits_path, ws.fingerprint_path) == (
        root / "preprocessed" / "plan.json", root / "preprocessed" / "splits.json",
        root / "preprocessed" / "fingerprint.json",
    )
    assert ws.champion_path("cnn") == root / "models" / "cnn" / "champion.json"
    assert ws.prediction_dir("cnn", "v1") == root / "predictions" / "cnn" / "v1"
    assert not root.exists()  # paths only: nothing is created until ensure()
    assert ws.ensure() is ws
    for d in (ws.volumes_dir, ws.preprocessed_dir, ws.models_dir, ws.predictions_dir, ws.reports_dir, ws.stages_dir):
        assert d.is_dir() and d.parent == root
