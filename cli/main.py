"""The ``medseg`` command line (typer). Stage commands run as Prefect flows; lookups call the library."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from medseg import __version__
from medseg.cli.choices import CaseSelection, DatasetFormat, ExampleConfig, ExportFormat, ModelFormat
from medseg.cli.common import (
    CONFIG_DIR,
    build_config,
    console,
    fail,
    friendly_errors,
    prefect_env,
    require_workspace,
    start_local_workers,
)
from medseg.cli.drift import drift_command
from medseg.cli.fast_exit import skip_final_gc
from medseg.cli.predict import predict_command
from medseg.cli.render import print_outcomes, print_qa, print_report_table, print_status
from medseg.cli.ui import ui_command
from medseg.config import MedsegConfig, ModelFamily
from medseg.config_loader import dump_config
from medseg.ingest.workers import INGEST_WORKER_MODULES
from medseg.workspace import Workspace

app = typer.Typer(
    name="medseg",
    help="DICOM archives → catalog → preprocessed Zarr → 3D U-Net / GAN models → segmentations → reports.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"medseg {__version__}")
        raise typer.Exit()


@app.callback()
def _process(
    version: Annotated[bool, typer.Option("--version", callback=_print_version, is_eager=True,
                                          help="Print the medseg version and exit.")] = False,
) -> None:
    skip_final_gc()  # every command exits ~0.1 s sooner (see medseg.cli.fast_exit)


ConfigOpt = Annotated[Path | None, typer.Option(
    "--config", "-c", help="YAML config (`medseg config --example default` prints a starting point)")]
SetOpt = Annotated[list[str] | None, typer.Option("--set", "-s", help="override, e.g. --set train.max_epochs=5")]
WorkspaceOpt = Annotated[Path | None, typer.Option(
    "--workspace", "-w", help="workspace dir", show_default="the config's workspace, else ./medseg-workspace")]
ForceOpt = Annotated[bool, typer.Option("--force", help="re-run even when inputs are unchanged")]
ModelOpt = Annotated[list[ModelFamily] | None, typer.Option(
    "--model", "-m", help="model family; repeat for both", show_default="the config's train.models: cnn, gan")]


def _families(cfg: MedsegConfig, models: list[ModelFamily] | None) -> list[str]:
    return [m.value for m in (models or cfg.train.models)]


def _check_sources(cfg: MedsegConfig) -> None:
    from medseg.stages.ingest import check_sources

    with friendly_errors():
        check_sources(cfg.sources)


def _flow_config(cfg: MedsegConfig) -> MedsegConfig:
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
    start_local_workers(cfg, INGEST_WORKER_MODULES)
    prefect_env()
    from medseg.flows.pipeline import pipeline_flow

    with friendly_errors():
        result: dict[str, Any] = pipeline_flow(_flow_config(cfg), force=force)
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
    print_qa(result["stages"])
    console.print(f"report: {result['report']}")


@app.command()
def run(
    config: Annotated[Path, typer.Argument(help="YAML config with sources and workspace")],
    overrides: SetOpt = None,
    force: ForceOpt = False,
) -> None:
    """Run the whole pipeline as configured."""
    cfg = build_config(config, overrides)
    _check_sources(cfg)
    result = _run_pipeline(cfg, force)
    print_outcomes(result["stages"])
    print_report_table(result["table"])
    print_qa(result["stages"])
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
    _check_sources(cfg)
    start_local_workers(cfg, INGEST_WORKER_MODULES)
    prefect_env()
    from medseg.flows.stages import ingest_flow

    with friendly_errors():
        print_outcomes(ingest_flow(_flow_config(cfg), force=force))


@app.command()
def preprocess(workspace: WorkspaceOpt = None, config: ConfigOpt = None, overrides: SetOpt = None,
               force: ForceOpt = False) -> None:
    """Fingerprint, plan and preprocess the ingested labeled volumes into Zarr (Dask-parallel)."""
    cfg = build_config(config, overrides, workspace)
    require_workspace(cfg, lambda ws: ws.catalog_path, "medseg ingest SOURCE...")
    start_local_workers(cfg)
    prefect_env()
    from medseg.flows.stages import preprocess_flow

    with friendly_errors():
        print_outcomes([preprocess_flow(_flow_config(cfg), force=force)])


@app.command()
def train(workspace: WorkspaceOpt = None, model: ModelOpt = None, config: ConfigOpt = None,
          overrides: SetOpt = None, force: ForceOpt = False) -> None:
    """Train the CNN (3D U-Net) and/or the GAN on the preprocessed data; promotes better models."""
    cfg = build_config(config, overrides, workspace)
    require_workspace(cfg, lambda ws: ws.plan_path, "medseg preprocess")
    prefect_env()
    from medseg.flows.stages import train_flow

    with friendly_errors():
        print_outcomes(train_flow(_flow_config(cfg), families=_families(cfg, model), force=force))


def _check_infer_inputs(ws: Workspace, families: list[str], cases: list[str] | None, ws_arg: str) -> None:
    """Every family has a champion model and every ``--case`` id is ingested (before Prefect starts)."""
    from medseg.inference.selection import ingested_case_ids
    from medseg.ops.nightly import champion_version

    with friendly_errors():
        unknown = sorted(set(cases or []) - set(ingested_case_ids(ws)))
        if unknown:
            raise fail(f"unknown case id(s) {', '.join(unknown)} in {ws.root}: `medseg catalog --workspace "
                       f"{ws_arg}` lists the ingested cases", code=1)
        for family in families:
            if champion_version(ws, family) is None:
                raise fail(f"no {family} model in {ws.root}: run `medseg train --model {family} "
                           f"--workspace {ws_arg}` first", code=1)


@app.command()
def infer(
    workspace: WorkspaceOpt = None,
    model: ModelOpt = None,
    cases: Annotated[list[str] | None, typer.Option("--case", help="case id; repeat for several",
                                                    show_default="the --select cases")] = None,
    select: Annotated[CaseSelection, typer.Option("--select", help="test (held-out split) or pending (every ingested "
                                                  "case without a prediction from the champion)")] = CaseSelection.TEST,
    config: ConfigOpt = None,
    overrides: SetOpt = None,
) -> None:
    """Predict cases with each family's champion model (Zarr, NIfTI and DICOM SEG outputs), then QA the predictions
    (prints how many cases are flagged; reports/infer-<time>/qa.md lists them first, with overlays)."""
    cfg = build_config(config, overrides, workspace)
    _check_infer_inputs(require_workspace(cfg, lambda ws: ws.catalog_path, "medseg ingest SOURCE..."),
                        _families(cfg, model), cases, str(cfg.workspace))
    prefect_env()
    from medseg.flows.stages import infer_flow

    with friendly_errors():
        outcomes = infer_flow(_flow_config(cfg), families=_families(cfg, model), case_ids=cases, cases=select.value)
    print_outcomes(outcomes)
    print_qa(outcomes)


app.command("predict")(predict_command)
app.command("drift")(drift_command)


@app.command()
def report(workspace: WorkspaceOpt = None, config: ConfigOpt = None, overrides: SetOpt = None) -> None:
    """Evaluate the champions' predictions against ground truth; write summary.json + report."""
    cfg = build_config(config, overrides, workspace)
    from medseg.stages.report import champion_predictions

    with friendly_errors():
        predictions = champion_predictions(require_workspace(cfg))
    if not predictions:
        raise fail(f"no predictions in {cfg.workspace}: run `medseg infer` first", code=1)
    prefect_env()
    from medseg.flows.stages import report_flow
    from medseg.runtime.run_id import new_run_id

    with friendly_errors():
        outcome = report_flow(_flow_config(cfg), predictions=predictions, run_id=new_run_id())
    print_report_table(outcome["stats"]["table"])
    if outcome["stats"].get("qa_flagged"):
        console.print(f"[bold yellow]QA: {outcome['stats']['qa_flagged']} predicted case(s) flagged 'look at this' "
                      "(the report lists them first)[/]")
    console.print(f"report: {outcome['outputs'][0]}")


@app.command()
def status(
    workspace: WorkspaceOpt = None,
    config: ConfigOpt = None,
    overrides: SetOpt = None,
    scan: Annotated[bool, typer.Option("--scan", help="count unindexed files under `sources` (walks them)")] = False,
) -> None:
    """Last runs (stage records; Prefect flow runs when PREFECT_API_URL is set), pending work, champions."""
    from medseg.cli.common import recent_flow_runs

    cfg = build_config(config, overrides, workspace)
    ws = require_workspace(cfg)
    with friendly_errors():
        print_status(ws, [m.value for m in cfg.train.models], sources=cfg.sources if scan else None,
                     flow_runs=recent_flow_runs(), workspace_arg=str(cfg.workspace))


@app.command()
def nightly(
    config: Annotated[Path, typer.Argument(help="YAML config with sources, workspace and the ops section")],
    overrides: SetOpt = None,
) -> None:
    """Run the nightly retrain once now (ingest new files; if any: preprocess, train, promote, infer, report)."""
    cfg = build_config(config, overrides)  # a bad config fails here with one line
    _check_sources(cfg)
    start_local_workers(cfg, INGEST_WORKER_MODULES)
    prefect_env()
    from medseg.flows.nightly import nightly_flow

    with friendly_errors():
        result = nightly_flow(config=build_config(config, overrides))  # a --set key never becomes a parameter
    print_outcomes(result["stages"])
    print_qa(result["stages"])
    console.print(result["message"])
    console.print(f"summary: {result['summary_md']}")


@app.command()
def bulk(
    config: Annotated[Path, typer.Argument(help="YAML config with sources and workspace")],
    overrides: SetOpt = None,
    files_per_task: Annotated[int | None, typer.Option("--files-per-task", min=1, help="files per Prefect task",
                                                       show_default="ops.bulk_files_per_task")] = None,
    assemble: Annotated[bool, typer.Option("--assemble/--index-only", help="plan series and write volumes")] = True,
) -> None:
    """Index a whole archive in resumable batches (rerun after a crash skips finished batches), then assemble."""
    cfg = build_config(config, overrides)
    _check_sources(cfg)
    start_local_workers(cfg, INGEST_WORKER_MODULES)
    prefect_env()
    from medseg.flows.bulk import bulk_flow

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

    from medseg.flows.bulk import bulk_flow
    from medseg.flows.nightly import batch_infer_flow, nightly_flow

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
        raise fail("`medseg serve` needs a running Prefect server: start one with `eval \"$(medseg ui --detach)\"` "
                   "(or export PREFECT_API_URL=http://HOST:4200/api of your site's server)")
    prefect_env()
    from prefect import serve as prefect_serve

    from medseg.cli.common import ensure_gpu_limit

    with friendly_errors():
        console.print(ensure_gpu_limit(gpu_slots))
        console.print(f"nightly-retrain: cron {cfg.ops.nightly_cron!r} ({cfg.ops.timezone})")
        prefect_serve(*served_deployments(config, cfg))


app.command("ui")(ui_command)


@app.command()
def catalog(
    workspace: WorkspaceOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
    quarantine: Annotated[bool, typer.Option("--quarantine", help="list quarantined files/series")] = False,
    config: ConfigOpt = None,
    overrides: SetOpt = None,
) -> None:
    """The series table (status, quarantine reasons) of the workspace catalog."""
    from medseg.cli.render import print_rows
    from medseg.io.catalog import Catalog

    cfg = build_config(config, overrides, workspace)
    ws = require_workspace(cfg, lambda ws: ws.catalog_path, "medseg ingest SOURCE...")
    with friendly_errors():
        cat = Catalog(ws.catalog_path, create=False)
        rows = cat.quarantine() if quarantine else cat.series_table()
    if as_json:
        typer.echo(json.dumps(rows, indent=2, default=str))
    else:
        print_rows(rows, title="quarantine" if quarantine else "series")


@app.command()
def export(
    series: Annotated[str, typer.Argument(help="SeriesInstanceUID or case id")],
    out: Annotated[Path, typer.Option("--out", "-o", help="output file, e.g. volume.nii.gz")],
    fmt: Annotated[ExportFormat, typer.Option("--format", "-f", help="output format")] = ExportFormat.NIFTI,
    channel: Annotated[
        str | None, typer.Option("--channel", help="channel name of a multi-channel case (default: the first)")
    ] = None,
    workspace: WorkspaceOpt = None,
    config: ConfigOpt = None,
    overrides: SetOpt = None,
) -> None:
    """Write an ingested volume with its affine (to check geometry in a viewer)."""
    from medseg.ingest.export import export_nifti

    cfg = build_config(config, overrides, workspace)
    ws = require_workspace(cfg, lambda ws: ws.catalog_path, "medseg ingest SOURCE...")
    with friendly_errors():
        path = export_nifti(ws, series, out, channel=channel)
    console.print(f"wrote {path}")


@app.command("export-dataset")
def export_dataset(
    out: Annotated[Path, typer.Argument(help="dataset folder to create, e.g. $nnUNet_raw/Dataset501_Liver")],
    fmt: Annotated[DatasetFormat, typer.Option("--format", "-f", help="dataset format")] = DatasetFormat.NNUNET,
    force: Annotated[bool, typer.Option("--force", help="replace an existing folder")] = False,
    workspace: WorkspaceOpt = None,
    config: ConfigOpt = None,
    overrides: SetOpt = None,
) -> None:
    """Write the labeled cases as an nnU-Net v2 raw dataset (imagesTr/labelsTr, test split and unlabeled cases
    in imagesTs, dataset.json)."""
    from medseg.ingest.export import export_nnunet_dataset

    cfg = build_config(config, overrides, workspace)
    ws = require_workspace(cfg, lambda ws: ws.catalog_path, "medseg ingest SOURCE...")
    with friendly_errors():
        summary = export_nnunet_dataset(ws, out, overwrite=force)
    console.print(f"wrote {summary.root}: {len(summary.training)} training, {len(summary.test)} test cases, "
                  f"channels {summary.channel_names}, labels {summary.labels}")
    if not re.fullmatch(r"Dataset\d{3}_\w+", summary.root.name):
        console.print("note: nnU-Net finds a dataset by id when its folder is $nnUNet_raw/DatasetNNN_Name")


@app.command("export-model")
def export_model(
    out: Annotated[Path, typer.Argument(help="bundle folder to create")],
    fmt: Annotated[ModelFormat, typer.Option("--format", "-f", help="model format")] = ModelFormat.MONAI_BUNDLE,
    model: Annotated[str, typer.Option(
        "--model", "-m", help="a model family (its champion) or a bundle folder")] = ModelFamily.CNN.value,
    force: Annotated[bool, typer.Option("--force", help="replace an existing folder")] = False,
    workspace: WorkspaceOpt = None,
    config: ConfigOpt = None,
    overrides: SetOpt = None,
) -> None:
    """Write a model bundle as a MONAI bundle (configs/inference.json runs with `python -m monai.bundle run`)."""
    from medseg.training.bundle import champion
    from medseg.training.monai_bundle import export_monai_bundle

    cfg = build_config(config, overrides, workspace)
    if Path(model).is_dir():
        source = Path(model)
    else:
        ws = require_workspace(cfg)
        found = champion(ws, model) if model in {f.value for f in ModelFamily} else None
        if found is None:
            raise fail(f"{model!r} is neither a bundle folder nor a model family with a champion in {ws.root} "
                       "(families: cnn, gan; run `medseg train` first)", code=1)
        source = found
    with friendly_errors():
        path = export_monai_bundle(source, out, cfg.infer, overwrite=force)
    console.print(f"wrote {path} (from {source}); run: python -m monai.bundle run --config_file "
                  f"{path}/configs/inference.json --bundle_root {path} --dataset_dir IMAGES --output_dir OUT")


@app.command("config")
def show_config(
    config: ConfigOpt = None,
    overrides: SetOpt = None,
    example: Annotated[ExampleConfig | None, typer.Option(
        "--example", help="print a config shipped with medseg, with its comments (a starting point to copy)")] = None,
) -> None:
    """Print the effective configuration (after --config and --set), or a shipped example."""
    if example is not None:
        if config is not None:
            raise fail("--example and --config exclude each other: --example prints a shipped config")
        config = CONFIG_DIR / f"{example.value}.yaml"
        if not overrides:
            build_config(config, None)  # the shipped file is valid (else one line, as for any config)
            typer.echo(config.read_text(), nl=False)
            return
    typer.echo(dump_config(build_config(config, overrides)))


if __name__ == "__main__":
    app()
