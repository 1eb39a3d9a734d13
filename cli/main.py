"""The ``medseg`` command line (typer). Stage commands run as Prefect flows; lookups call the library."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from cli.common import (
    CONFIG_DIR,
    build_config,
    console,
    fail,
    friendly_errors,
    prefect_env,
    start_local_workers,
)
from cli.render import print_outcomes, print_report_table, print_status
from medseg.config import MedsegConfig, ModelFamily
from medseg.config_loader import dump_config
from medseg.fast_exit import skip_final_gc
from medseg.workspace import Workspace

app = typer.Typer(
    name="medseg",
    help="DICOM archives → catalog → preprocessed Zarr → 3D U-Net / GAN models → segmentations → reports.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _process() -> None:
    skip_final_gc()  # every command exits ~0.1 s sooner (see medseg.fast_exit)


ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="YAML config (see configs/)")]
SetOpt = Annotated[list[str] | None, typer.Option("--set", "-s", help="override, e.g. --set train.max_epochs=5")]
WorkspaceOpt = Annotated[
    Path | None, typer.Option("--workspace", "-w", help="workspace dir [default: ./medseg-workspace]")
]
ForceOpt = Annotated[bool, typer.Option("--force", help="re-run even when inputs are unchanged")]
ModelOpt = Annotated[list[ModelFamily] | None, typer.Option("--model", "-m", help="cnn and/or gan [default: both]")]


def _families(cfg: MedsegConfig, models: list[ModelFamily] | None) -> list[str]:
    return [m.value for m in (models or cfg.train.models)]


def _cfg_dict(cfg: MedsegConfig) -> MedsegConfig:
    """The config as a flow parameter: the object itself, so the de-identification key reaches the flow while
    Prefect stores only its JSON dump, in which the key shows as '**********' (see medseg.ops.params)."""
    return cfg


def _generate_demo(out: Path, cases: int, seed: int) -> Path:
    from medseg.demo.archive import generate_demo_archive

    with Progress(TextColumn("[bold]demo data"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console) as bar:
        job = bar.add_task("cases", total=cases)

        def _tick(done: int, total: int) -> None:
            bar.update(job, completed=done, total=total)

        manifest = generate_demo_archive(out, cases=cases, seed=seed, progress=_tick)
    console.print(f"demo archive: {out} ({len(manifest.cases)} studies)")
    return out


@app.command("demo-data")
def demo_data(
    out: Annotated[Path, typer.Argument(help="output folder for the synthetic DICOM archive")],
    cases: Annotated[int, typer.Option("--cases", "-n", min=3, help="number of studies")] = 12,
    seed: Annotated[int, typer.Option("--seed", help="random seed (same seed → same files)")] = 0,
) -> None:
    """Write a synthetic CT archive (DICOM + DICOM SEG ground truth) for demos and tests."""
    with friendly_errors():
        _generate_demo(out, cases, seed)


def _run_pipeline(cfg: MedsegConfig, force: bool) -> dict[str, Any]:
    start_local_workers(cfg)
    prefect_env()
    from flows.pipeline import pipeline_flow

    with friendly_errors():
        result: dict[str, Any] = pipeline_flow(_cfg_dict(cfg), force=force)
    return result


@app.command()
def demo(
    root: Annotated[Path, typer.Option("--dir", help="where the demo archive and workspace go")] = Path("medseg-demo"),
    cases: Annotated[int, typer.Option("--cases", "-n", min=4)] = 12,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    config: ConfigOpt = None,
    overrides: SetOpt = None,
    force: ForceOpt = False,
) -> None:
    """Generate the demo archive (once) and run the whole pipeline on it; prints the per-model table."""
    archive = root / "archive"
    cfg = build_config(config or CONFIG_DIR / "demo.yaml", overrides, workspace=root / "workspace",
                       sources=[archive])
    if not (archive / "manifest.json").is_file():
        with friendly_errors():
            _generate_demo(archive, cases, seed)
    result = _run_pipeline(cfg, force)
    print_outcomes(result["stages"])
    print_report_table(result["table"])
    console.print(f"report: {result['report']}")


@app.command()
def run(
    config: Annotated[Path, typer.Argument(help="YAML config with sources and workspace")],
    overrides: SetOpt = None,
    force: ForceOpt = False,
) -> None:
    """Run the whole pipeline as configured."""
    cfg = build_config(config, overrides)
    result = _run_pipeline(cfg, force)
    print_outcomes(result["stages"])
    print_report_table(result["table"])
    console.print(f"report: {result['report']}")


@app.command()
def ingest(
    sources: Annotated[list[Path], typer.Argument(help="DICOM folders (searched recursively)")],
    workspace: WorkspaceOpt = None,
    config: ConfigOpt = None,
    overrides: SetOpt = None,
    force: ForceOpt = False,
) -> None:
    """Index DICOM files into the catalog and write geometry-correct volumes (+ labels)."""
    cfg = build_config(config, overrides, workspace, sources)
    with friendly_errors():
        from medseg.stages.ingest import check_sources

        check_sources(cfg.sources)
    start_local_workers(cfg)
    prefect_env()
    from flows.stages import ingest_flow

    with friendly_errors():
        print_outcomes([ingest_flow(_cfg_dict(cfg), force=force)])


@app.command()
def preprocess(workspace: WorkspaceOpt = None, config: ConfigOpt = None, overrides: SetOpt = None,
               force: ForceOpt = False) -> None:
    """Fingerprint, plan and preprocess the ingested labeled volumes into Zarr (Dask-parallel)."""
    cfg = build_config(config, overrides, workspace)
    start_local_workers(cfg)
    prefect_env()
    from flows.stages import preprocess_flow

    with friendly_errors():
        print_outcomes([preprocess_flow(_cfg_dict(cfg), force=force)])


@app.command()
def train(workspace: WorkspaceOpt = None, model: ModelOpt = None, config: ConfigOpt = None,
          overrides: SetOpt = None, force: ForceOpt = False) -> None:
    """Train the CNN (3D U-Net) and/or the GAN on the preprocessed data; promotes better models."""
    cfg = build_config(config, overrides, workspace)
    prefect_env()
    from flows.stages import train_flow

    with friendly_errors():
        print_outcomes(train_flow(_cfg_dict(cfg), _families(cfg, model), force=force))


@app.command()
def infer(
    workspace: WorkspaceOpt = None,
    model: ModelOpt = None,
    cases: Annotated[list[str] | None, typer.Option("--case", help="case ids [default: --select]")] = None,
    select: Annotated[str, typer.Option("--select", help="test (held-out split) or pending (every ingested case "
                                        "without a prediction from the champion)")] = "test",
    config: ConfigOpt = None,
    overrides: SetOpt = None,
) -> None:
    """Predict cases with each family's champion model (Zarr, NIfTI and DICOM SEG outputs)."""
    if select not in ("test", "pending"):
        raise fail(f"--select must be 'test' or 'pending', got {select!r}")
    cfg = build_config(config, overrides, workspace)
    prefect_env()
    from flows.stages import infer_flow

    with friendly_errors():
        print_outcomes(infer_flow(_cfg_dict(cfg), _families(cfg, model), case_ids=cases, cases=select))


@app.command()
def report(workspace: WorkspaceOpt = None, config: ConfigOpt = None, overrides: SetOpt = None) -> None:
    """Evaluate the champions' predictions against ground truth; write summary.json + report."""
    cfg = build_config(config, overrides, workspace)
    from medseg.stages.report import champion_predictions

    predictions = champion_predictions(Workspace.at(cfg.workspace))
    if not predictions:
        raise fail(f"no predictions in {cfg.workspace}: run `medseg infer` first", code=1)
    prefect_env()
    from flows.pipeline import new_run_id
    from flows.stages import report_flow

    with friendly_errors():
        outcome = report_flow(_cfg_dict(cfg), predictions, new_run_id())
    print_report_table(outcome["stats"]["table"])
    console.print(f"report: {outcome['outputs'][0]}")


@app.command()
def status(
    workspace: WorkspaceOpt = None,
    config: ConfigOpt = None,
    overrides: SetOpt = None,
    scan: Annotated[bool, typer.Option("--scan", help="count unindexed files under `sources` (walks them)")] = False,
) -> None:
    """Last runs (stage records; Prefect flow runs when PREFECT_API_URL is set), pending work, champions."""
    from cli.common import recent_flow_runs

    cfg = build_config(config, overrides, workspace)
    print_status(Workspace.at(cfg.workspace), [m.value for m in cfg.train.models],
                 sources=cfg.sources if scan else None, flow_runs=recent_flow_runs())


@app.command()
def nightly(
    config: Annotated[Path, typer.Argument(help="YAML config with sources, workspace and the ops section")],
    overrides: SetOpt = None,
) -> None:
    """Run the nightly retrain once now (ingest new files; if any: preprocess, train, promote, infer, report)."""
    start_local_workers(build_config(config, overrides))  # a bad config fails here with one line
    prefect_env()
    from flows.nightly import nightly_flow

    with friendly_errors():
        result = nightly_flow(config=build_config(config, overrides))  # a --set key never becomes a parameter
    print_outcomes(result["stages"])
    console.print(result["message"])
    console.print(f"summary: {result['summary_md']}")


@app.command()
def bulk(
    config: Annotated[Path, typer.Argument(help="YAML config with sources and workspace")],
    overrides: SetOpt = None,
    files_per_task: Annotated[int | None, typer.Option("--files-per-task", min=1,
                                                       help="[default: ops.bulk_files_per_task]")] = None,
    assemble: Annotated[bool, typer.Option("--assemble/--index-only", help="plan series and write volumes")] = True,
) -> None:
    """Index a whole archive in resumable batches (rerun after a crash skips finished batches), then assemble."""
    start_local_workers(build_config(config, overrides))
    prefect_env()
    from flows.bulk import bulk_flow

    with friendly_errors():
        result = bulk_flow(config=build_config(config, overrides), files_per_task=files_per_task,
                           assemble=assemble)
    console.print(f"bulk {result['manifest']}: {result['n_files']} files, {result['n_batches']} batches "
                  f"({len(result['batches_run'])} run, {len(result['batches_skipped'])} already done) "
                  f"in {result['wall_seconds']:.1f}s")
    if result["assemble"]:
        print_outcomes([{"stage": "assemble", "seconds": result["assemble"]["seconds"], "stats": result["assemble"]}])


def served_deployments(config: Path, cfg: MedsegConfig) -> list[Any]:
    """RunnerDeployments served by ``medseg serve``: nightly-retrain (cron of ``ops``), bulk-ingest, batch-infer."""
    from prefect.schedules import Cron

    from flows.bulk import bulk_flow
    from flows.nightly import batch_infer_flow, nightly_flow

    params = {"config_path": str(config.resolve())}
    return [
        nightly_flow.to_deployment("nightly-retrain", parameters=params, tags=["medseg", "nightly"],
                                   schedules=[Cron(cfg.ops.nightly_cron, timezone=cfg.ops.timezone)],
                                   concurrency_limit=1),
        bulk_flow.to_deployment("bulk-ingest", parameters=params, tags=["medseg", "bulk"], concurrency_limit=1),
        batch_infer_flow.to_deployment("batch-infer", parameters=params, tags=["medseg", "infer"]),
    ]


@app.command()
def serve(
    config: Annotated[Path, typer.Argument(help="YAML config the served flows run with (ops.nightly_cron/timezone)")],
    gpu_slots: Annotated[int, typer.Option("--gpu-slots", min=1, help="training tasks allowed at once")] = 1,
) -> None:
    """Serve the nightly schedule, bulk-ingest and batch-infer on this box (no work pool); Ctrl-C stops.

    Needs a persistent Prefect server (PREFECT_API_URL); creates the `gpu` tag concurrency limit.
    """
    cfg = build_config(config, None)
    if not os.environ.get("PREFECT_API_URL"):
        raise fail("`medseg serve` needs a running Prefect server: start `prefect server start` and "
                   "export PREFECT_API_URL=http://127.0.0.1:4200/api")
    prefect_env()
    from prefect import serve as prefect_serve

    from cli.common import ensure_gpu_limit

    with friendly_errors():
        console.print(ensure_gpu_limit(gpu_slots))
        console.print(f"nightly-retrain: cron {cfg.ops.nightly_cron!r} ({cfg.ops.timezone})")
        prefect_serve(*served_deployments(config, cfg))


@app.command()
def catalog(
    workspace: WorkspaceOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
    quarantine: Annotated[bool, typer.Option("--quarantine", help="list quarantined files/series")] = False,
    config: ConfigOpt = None,
    overrides: SetOpt = None,
) -> None:
    """The series table (status, quarantine reasons) of the workspace catalog."""
    from cli.render import print_rows
    from medseg.ingest.catalog import Catalog

    cfg = build_config(config, overrides, workspace)
    ws = Workspace.at(cfg.workspace)
    if not ws.catalog_path.is_file():
        raise fail(f"no catalog at {ws.catalog_path}: run `medseg ingest SOURCE --workspace {cfg.workspace}`", 1)
    cat = Catalog(ws.catalog_path)
    rows = cat.quarantine() if quarantine else cat.series_table()
    if as_json:
        typer.echo(json.dumps(rows, indent=2, default=str))
    else:
        print_rows(rows, title="quarantine" if quarantine else "series")


@app.command()
def export(
    series: Annotated[str, typer.Argument(help="SeriesInstanceUID or case id")],
    out: Annotated[Path, typer.Option("--out", "-o", help="output file, e.g. volume.nii.gz")],
    fmt: Annotated[str, typer.Option("--format", "-f", help="nifti")] = "nifti",
    workspace: WorkspaceOpt = None,
    config: ConfigOpt = None,
    overrides: SetOpt = None,
) -> None:
    """Write an ingested volume with its affine (to check geometry in a viewer)."""
    if fmt != "nifti":
        raise fail(f"--format {fmt!r} is not supported; use --format nifti")
    from medseg.ingest.export import export_nifti

    cfg = build_config(config, overrides, workspace)
    with friendly_errors():
        try:
            path = export_nifti(Workspace.at(cfg.workspace), series, out)
        except KeyError as exc:  # unknown case id / SeriesInstanceUID: the message says which and where
            raise fail(str(exc.args[0]) if exc.args else f"unknown case {series!r}", code=1) from None
    console.print(f"wrote {path}")


@app.command("config")
def show_config(config: ConfigOpt = None, overrides: SetOpt = None) -> None:
    """Print the effective configuration (after --config and --set)."""
    typer.echo(dump_config(build_config(config, overrides)))


if __name__ == "__main__":
    app()
