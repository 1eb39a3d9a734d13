"""medseg.ops.status: what `medseg status` shows on a fresh workspace, and the next step to run."""

from __future__ import annotations

from pathlib import Path

from medseg.ops.status import ChampionInfo, PendingWork, champions, last_stage_runs, next_step, pending_work
from medseg.workspace import Workspace


def test_a_fresh_workspace_has_no_runs_no_champion_and_nothing_pending(tmp_path: Path) -> None:
    ws = Workspace.at(tmp_path / "ws").ensure()
    (ws.model_family_dir("gan")).mkdir(parents=True)
    (ws.stages_dir / "broken.json").write_text("{not json")
    assert last_stage_runs(ws) == []
    assert champions(ws, ["cnn"]) == [ChampionInfo(family="cnn", version=None),
                                      ChampionInfo(family="gan", version=None)]
    work = pending_work(ws, [])
    assert work == PendingWork()


def test_next_step_follows_the_pipeline_order(tmp_path: Path) -> None:
    ws = Workspace.at(tmp_path / "ws").ensure()
    step = next_step(ws, PendingWork(), [])
    assert step is not None and step.command == "medseg ingest SOURCE..." and "nothing ingested" in step.reason
    ws.catalog_path.touch()
    step = next_step(ws, PendingWork(files_unindexed=3), [])
    assert step is not None and step.reason == "3 files not indexed yet"
    step = next_step(ws, PendingWork(), [])
    assert step is not None and step.command == "medseg catalog --quarantine"
    step = next_step(ws, PendingWork(cases_ingested=4, cases_not_preprocessed=2), [])
    assert step is not None and step.command == "medseg preprocess"
    ws.plan_path.write_text("{}")
    no_model = [ChampionInfo(family="cnn", version=None), ChampionInfo(family="gan", version="v1", error="broken")]
    step = next_step(ws, PendingWork(cases_ingested=4), no_model)
    assert step is not None and step.command == "medseg train --model cnn --model gan"
    trained = [ChampionInfo(family="cnn", version="v1")]
    step = next_step(ws, PendingWork(cases_ingested=4), trained)
    assert step is not None and step.command == "medseg infer"
    (ws.prediction_dir("cnn", "v1") / "c1.zarr").mkdir(parents=True)
    step = next_step(ws, PendingWork(cases_ingested=4), trained)
    assert step is not None and step.command == "medseg report"
    (ws.reports_dir / "r1").mkdir()
    (ws.reports_dir / "r1" / "report.md").write_text("# report")
    step = next_step(ws, PendingWork(cases_ingested=4, cases_without_prediction={"cnn": 2}), trained)
    assert step is not None and step.command == "medseg infer --select pending"
    assert next_step(ws, PendingWork(cases_ingested=4), trained) is None
