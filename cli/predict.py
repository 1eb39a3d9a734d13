"""``medseg predict``: DICOM folders and NIfTI/NRRD files in, one segmentation per study out (nnU-Net style)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from medseg.cli.common import build_config, console, fail, friendly_errors, prefect_env, start_local_workers
from medseg.ingest.workers import INGEST_WORKER_MODULES

_STATUS_STYLE = {"predicted": "green", "skipped": "yellow", "failed": "red"}


def predict_command(
    inputs: Annotated[list[Path], typer.Option(
        "--input", "-i", help="DICOM folder (any nesting, many studies) or NIfTI/NRRD file or folder; repeat -i")],
    output: Annotated[Path, typer.Option("--output", "-o", help="output folder (one output per study)")],
    model: Annotated[str, typer.Option(
        "--model", "-m", help="cnn or gan (the champion of the workspace) or a model bundle folder")],
    formats: Annotated[str, typer.Option(
        "--format", "-f", help="comma-separated outputs: dicom-seg (DICOM inputs only), nifti, zarr")
    ] = "nifti,dicom-seg",
    keep_names: Annotated[bool, typer.Option(
        "--keep-names", help="name outputs after the input (file stem, folder name or StudyInstanceUID) instead of "
                             "the de-identified study key")] = False,
    workspace: Annotated[Path | None, typer.Option(
        "--workspace", "-w", help="ingest into this workspace and keep it (also where --model cnn|gan is found)",
        show_default="a temporary workspace in the output folder, removed at the end")] = None,
    config: Annotated[Path | None, typer.Option("--config", "-c", help="YAML config")] = None,
    overrides: Annotated[list[str] | None, typer.Option("--set", "-s", help="override, e.g. --set infer.overlap=0.5")
                         ] = None,
) -> None:
    """Ingest DICOM folders and NIfTI/NRRD files, predict every image series, write one output per study.

    Exits 1 when an input yields nothing predicted or a case fails (the table says why).
    """
    from medseg.inference.predict_inputs import parse_formats
    from medseg.stages.ingest import check_sources
    from medseg.stages.predict import resolve_model

    cfg = build_config(config, overrides, workspace)
    try:
        parse_formats(formats)
    except ValueError as exc:
        raise fail(str(exc)) from None  # a bad option: exit code 2, as for a bad config
    with friendly_errors():  # every input and the model are checked before Prefect starts
        check_sources(list(inputs))
        resolve_model(cfg, model)
    start_local_workers(cfg, INGEST_WORKER_MODULES)
    prefect_env()
    from medseg.flows.stages import predict_flow

    with friendly_errors():
        outcome = predict_flow(cfg, inputs=[str(p) for p in inputs], output=str(output), model=model,
                               formats=formats, keep_names=keep_names, temporary_workspace=workspace is None)
    print_predictions(outcome)
    problems = outcome["stats"]["problems"]
    if problems:
        raise fail("; ".join(problems), code=1)


def print_predictions(outcome: dict[str, Any]) -> None:
    """The summary table: one row per predicted/failed case and per (input, skip reason)."""
    stats = outcome["stats"]
    table = Table(title=f"predict: {stats['model']} -> {outcome['outputs'][0]}")
    for col in ("input", "status", "output", "details"):
        table.add_column(col, overflow="fold")
    for row in stats["rows"]:
        style = _STATUS_STYLE[row["status"]]
        status = row["status"] + (f" ×{row['count']}" if row["count"] > 1 else "")
        details = escape(f"{row['reason']}: {row['detail']}" if row["reason"] else row["detail"])
        if row.get("qa_flagged"):
            details += f"\n[bold yellow]QA flagged:[/] {escape('; '.join(row.get('qa_reasons') or []))}"
        table.add_row(escape(Path(row["input"]).name), f"[{style}]{status}[/]", escape(row["name"]), details)
    console.print(table)
    flagged = stats.get("qa_flagged", 0)
    console.print(f"predicted {stats['predicted']}, skipped {stats['skipped']}, failed {stats['failed']}, "
                  f"QA flagged {flagged} in {outcome['seconds']:.1f}s; "
                  f"summary: {Path(outcome['outputs'][0]) / 'predict.json'}", highlight=False)
