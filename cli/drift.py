"""``medseg drift``: are the newly ingested cases like the training cases? (checks a delivery; no Prefect)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from medseg.cli.common import build_config, console, fail, friendly_errors, require_workspace


def drift_command(
    cases: Annotated[list[str] | None, typer.Option(
        "--case", help="case id to check; repeat for several",
        show_default="the cases the newest ingest run wrote")] = None,
    workspace: Annotated[Path | None, typer.Option(
        "--workspace", "-w", help="workspace dir", show_default="the config's workspace, else ./medseg-workspace")
    ] = None,
    config: Annotated[Path | None, typer.Option("--config", "-c", help="YAML config")] = None,
    overrides: Annotated[list[str] | None, typer.Option(
        "--set", "-s", help="override, e.g. --set ops.drift_geometry_factor=2")] = None,
) -> None:
    """Compare new cases with the plan's training cases; write reports/drift-<time>/drift.{json,md,png}."""
    from medseg.cli.render import print_rows
    from medseg.io.catalog import Catalog
    from medseg.runtime.run_id import new_run_id
    from medseg.stages.drift import run_drift_stage

    cfg = build_config(config, overrides, workspace)
    ws = require_workspace(cfg, lambda ws: ws.catalog_path, "medseg ingest SOURCE...")
    with friendly_errors():
        catalog = Catalog(ws.catalog_path, create=False)
        if cases:
            unknown = sorted(set(cases) - {c.case_id for c in catalog.cases()})
            if unknown:
                raise fail(f"unknown case id(s) {', '.join(unknown)} in {ws.root}: `medseg catalog --workspace "
                           f"{cfg.workspace}` lists the ingested cases", code=1)
        else:
            newest = catalog.newest_writing_run()
            cases = catalog.cases_written_by(newest) if newest else []
            if not cases:
                raise fail(f"no ingested case in {ws.root} to check: run `medseg ingest SOURCE... --workspace "
                           f"{cfg.workspace}` first", code=1)
    require_workspace(cfg, lambda ws: ws.plan_path, "medseg preprocess")
    with friendly_errors():
        outcome = run_drift_stage(cfg, new_run_id("drift"), case_ids=cases)
    print_rows(outcome.stats["table"], title="drift")
    console.print(f"{outcome.stats['out_of_distribution']} of {outcome.stats['cases']} case(s) out of distribution; "
                  f"report: {outcome.outputs[-1]}")
