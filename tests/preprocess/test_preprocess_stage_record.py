"""Incremental preprocessing, asserted from the run record (``WS/stages/preprocess.json``), not timing."""

from __future__ import annotations

from pathlib import Path

from preprocess_synthetic import MakeCase

from medseg.config import MedsegConfig
from medseg.io.volume_store import read_meta
from medseg.stage_record import load_record
from medseg.stages.preprocess import STAGE, run_preprocess_stage
from medseg.workspace import Workspace


def _recorded(ws: Workspace) -> dict[str, object]:
    rec = load_record(ws, STAGE)
    assert rec is not None, f"no run record in {ws.stages_dir}"
    return rec.stats


def _store_stamps(ws: Workspace) -> dict[str, int]:
    cases = ws.preprocessed_case_path("x").parent
    return {p.name: (p / "zarr.json").stat().st_mtime_ns for p in sorted(cases.glob("*.zarr"))}


def test_rerun_plan_change_and_new_case(ws: Workspace, cfg: MedsegConfig, make_case: MakeCase) -> None:
    cfg.dask.n_workers = 1
    for i in range(3):
        make_case(f"c{i}", seed=i)

    first = run_preprocess_stage(cfg)
    stats = _recorded(ws)
    assert not first.skipped
    assert (stats["cases_total"], stats["cases_processed"], stats["cases_skipped"]) == (3, 3, 0)
    stamps = _store_stamps(ws)

    # nothing changed: the stage is skipped from its record ...
    again = run_preprocess_stage(cfg)
    assert again.skipped and again.stats["cases_processed"] == 3  # stats of the recorded run
    # ... and when forced, every case is skipped by its (source hash, plan hash)
    forced = run_preprocess_stage(cfg, force=True)
    stats = _recorded(ws)
    assert not forced.skipped
    assert (stats["cases_processed"], stats["cases_skipped"], stats["failed"]) == (0, 3, [])
    assert _store_stamps(ws) == stamps  # no store was rewritten

    # a plan change (target spacing override) redoes every case
    plan_hash = stats["plan_hash"]
    cfg.preprocess.target_spacing = (1.5, 0.75, 0.75)
    run_preprocess_stage(cfg)
    stats = _recorded(ws)
    assert stats["plan_hash"] != plan_hash
    assert (stats["cases_processed"], stats["cases_skipped"]) == (3, 0)
    for i in range(3):
        assert read_meta(ws.preprocessed_case_path(f"c{i}"))["source"]["plan_hash"] == stats["plan_hash"]

    # a new case (same geometry: the overridden plan does not change) only processes itself
    stamps = _store_stamps(ws)
    make_case("c3", seed=3)
    run_preprocess_stage(cfg)
    stats = _recorded(ws)
    assert (stats["cases_total"], stats["cases_processed"], stats["cases_skipped"]) == (4, 1, 3)
    now = _store_stamps(ws)
    assert {k: now[k] for k in stamps} == stamps and "c3.zarr" in now
    assert Path(ws.plan_path).is_file()
