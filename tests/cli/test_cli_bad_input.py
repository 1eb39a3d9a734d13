"""Every command, given each bad input it can get (bad or misspelt config, missing workspace, missing
input of an earlier stage, unknown ids, missing model, a locked catalog), answers with one line and a
non-zero exit code, never a traceback, and checks its inputs before it starts Prefect. Read-only
commands (status, catalog, export, config) create no file in the workspace, whatever the input."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from medseg.cli.main import app
from medseg.config import IngestConfig
from medseg.demo.archive import generate_demo_archive
from medseg.ingest.run import ingest
from medseg.workspace import Workspace

runner = CliRunner()

#: every command of the app (test_every_command_is_covered keeps this list and BAD_INPUTS complete)
COMMANDS = ("demo", "demo-data", "run", "ingest", "preprocess", "train", "infer", "predict", "report", "status",
            "nightly", "bulk", "serve", "ui", "catalog", "export", "export-dataset", "export-model", "config",
            "drift")


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """An ingested workspace (3 demo cases), an empty one, configs good and bad, in one folder."""
    root = tmp_path_factory.mktemp("cli-bad")
    generate_demo_archive(root / "archive", cases=3, seed=1)
    ingest([root / "archive"], Workspace.at(root / "ws"), IngestConfig(deid_secret="cli-test", files_per_batch=64))
    (root / "empty").mkdir()
    (root / "good.yaml").write_text(f"workspace: {root / 'ws'}\nsources: [{root / 'archive'}]\n")
    (root / "typo.yaml").write_text("train:\n  max_epoch: 3\n")
    (root / "invalid.yaml").write_text("train:\n  max_epochs: -1\n")
    (root / "notyaml.yaml").write_text("train: [unclosed\n")
    (root / "nosource.yaml").write_text(f"workspace: {root / 'ws'}\nsources: [{root / 'no-such-archive'}]\n")
    return {"root": root}


def _args(template: str, root: Path) -> list[str]:
    return template.format(root=root).split()


#: (command line, expected exit code, text the one line must hold)
BAD_INPUTS: list[tuple[str, int, str]] = [
    # bad config: a misspelt key (with "did you mean"), an invalid value, an unreadable or missing file
    *[(f"{cmd} --set train.max_epoch=3", 2, "did you mean 'train.max_epochs'") for cmd in (
        "demo --dir {root}/d", "run {root}/good.yaml", "ingest {root}/archive -w {root}/ws", "preprocess -w {root}/ws",
        "train -w {root}/ws", "infer -w {root}/ws", "report -w {root}/ws", "status -w {root}/ws",
        "nightly {root}/good.yaml", "bulk {root}/good.yaml", "catalog -w {root}/ws", "export x -o {root}/x.nii.gz",
        "config", "drift -w {root}/ws")],
    ("config --config {root}/typo.yaml", 2, "field 'train.max_epoch': unknown key; did you mean 'train.max_epochs'"),
    ("status -w {root}/ws --set trian.max_epochs=3", 2, "did you mean 'train'"),
    ("train -w {root}/ws --config {root}/invalid.yaml", 2, "field 'train.max_epochs'"),
    ("catalog -w {root}/ws --config {root}/notyaml.yaml", 2, "is not valid YAML"),
    ("serve {root}/typo.yaml", 2, "did you mean"),
    ("nightly {root}/missing.yaml", 2, "config file not found"),
    ("bulk {root}/missing.yaml", 2, "config file not found"),
    ("run {root}/missing.yaml", 2, "config file not found"),
    ("config --example demo --config {root}/good.yaml", 2, "exclude each other"),
    # missing sources
    ("ingest {root}/no-such-archive -w {root}/ws", 1, "DICOM source not found"),
    ("run {root}/nosource.yaml", 1, "DICOM source not found"),
    ("nightly {root}/nosource.yaml", 1, "DICOM source not found"),
    ("bulk {root}/nosource.yaml", 1, "DICOM source not found"),
    ("demo-data {root}/good.yaml", 1, "not a folder"),
    # missing workspace
    *[(f"{cmd} -w {{root}}/missing-ws", 1, "no workspace at") for cmd in (
        "preprocess", "train", "infer", "report", "status", "catalog", "export x -o {root}/x.nii.gz", "drift")],
    # an earlier stage has not run
    ("preprocess -w {root}/empty", 1, "run `medseg ingest SOURCE..."),
    ("catalog -w {root}/empty", 1, "run `medseg ingest SOURCE..."),
    ("train -w {root}/ws", 1, "run `medseg preprocess"),
    ("drift -w {root}/empty", 1, "run `medseg ingest SOURCE..."),
    ("drift -w {root}/ws", 1, "run `medseg preprocess"),
    # unknown ids, missing model
    ("export no-such-case -o {root}/x.nii.gz -w {root}/ws", 1, "no-such-case"),
    ("infer --case no-such-case -w {root}/ws", 1, "unknown case id(s) no-such-case"),
    ("drift --case no-such-case -w {root}/ws", 1, "unknown case id(s) no-such-case"),
    ("infer -w {root}/ws --model gan", 1, "no gan model"),
    ("report -w {root}/ws", 1, "no predictions"),
    ("serve {root}/good.yaml", 2, "needs a running Prefect server"),
    # ui: contradicting options, an address not of this machine (a busy port: tests/cli/test_cli_ui.py)
    ("ui --stop --detach", 2, "--stop and --detach exclude each other"),
    ("ui --detach --host 192.0.2.1", 1, "cannot listen on 192.0.2.1:4200"),
    # predict: a bad config or format, a missing input, a missing model (checked before anything is ingested)
    ("predict -i {root}/archive -o {root}/p -m cnn -w {root}/ws --set train.max_epoch=3", 2, "did you mean"),
    ("predict -i {root}/archive -o {root}/p -m cnn -w {root}/ws --format nifti,nii", 2,
     "unknown output format 'nii'"),
    ("predict -i {root}/no-such-archive -o {root}/p -m cnn -w {root}/ws", 1, "DICOM source not found"),
    ("predict -i {root}/archive -o {root}/p -m gan -w {root}/ws", 1, "no gan champion"),
    ("predict -i {root}/archive -o {root}/p -m {root}/no-bundle -w {root}/ws", 1, "neither a model family"),
    # exports: a bad config, no workspace, no model to export
    ("export-dataset {root}/nn --set train.max_epoch=3", 2, "did you mean"),
    ("export-dataset {root}/nn -w {root}/missing-ws", 1, "no workspace at"),
    ("export-model {root}/mb -w {root}/ws --set train.max_epoch=3", 2, "did you mean"),
    ("export-model {root}/mb -w {root}/ws", 1, "neither a bundle folder nor a model family with a champion"),
]


def test_every_command_is_covered() -> None:
    registered = {c.name or c.callback.__name__.replace("_", "-") for c in app.registered_commands if c.callback}
    assert registered == set(COMMANDS)
    covered = {template.split()[0] for template, _, _ in BAD_INPUTS}
    assert covered == set(COMMANDS)


@pytest.fixture
def ws_files(site: dict[str, Path]) -> Iterator[None]:
    """The workspaces hold the same files after the command (read-only commands create nothing)."""
    root = site["root"]

    def listing() -> list[str]:
        return sorted(str(p.relative_to(root)) for d in ("ws", "empty") for p in (root / d).rglob("*"))

    before = listing()
    yield
    assert listing() == before
    assert not (root / "missing-ws").exists()


@pytest.mark.parametrize(("template", "code", "text"), BAD_INPUTS, ids=[t for t, _, _ in BAD_INPUTS])
def test_bad_input_gives_one_line_and_an_exit_code(site: dict[str, Path], ws_files: None, template: str, code: int,
                                                   text: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    result = runner.invoke(app, _args(template, site["root"]), env={"COLUMNS": "300"})
    out = result.output
    assert "Traceback" not in out, out
    assert result.exception is None or isinstance(result.exception, SystemExit), out
    assert result.exit_code == code, out
    lines = [line for line in out.splitlines() if line.strip()]
    assert lines[-1].startswith("error: ") and text in lines[-1], out
    assert len([line for line in lines if line.startswith("error: ")]) == 1, out
    assert not (site["root"] / "d").exists()  # `demo` with a bad config generated nothing


@pytest.mark.parametrize("template", [
    "status -w {root}/ws", "catalog -w {root}/ws", "catalog -w {root}/ws --json --quarantine", "config",
    "config --example default", "export {case} -o {root}/out.nii.gz -w {root}/ws",
])
def test_read_only_commands_work_and_create_nothing_while_the_catalog_is_locked(
        site: dict[str, Path], ws_files: None, template: str) -> None:
    """A running ingest holds the catalog's write lock: readers neither wait for it nor write."""
    root = site["root"]
    case = json.loads(runner.invoke(app, ["catalog", "-w", str(root / "ws"), "--json"]).output)[0]["case_id"]
    writer = sqlite3.connect(root / "ws" / "catalog.sqlite", timeout=0, isolation_level=None)
    try:
        writer.execute("BEGIN IMMEDIATE")  # the write lock, as an ingest transaction holds it
        result = runner.invoke(app, template.format(root=root, case=case).split(), env={"COLUMNS": "300"})
    finally:
        writer.execute("ROLLBACK")
        writer.close()
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    (root / "out.nii.gz").unlink(missing_ok=True)


def test_status_of_a_new_workspace_says_what_to_run_next(site: dict[str, Path]) -> None:
    empty = runner.invoke(app, ["status", "-w", str(site["root"] / "empty")], env={"COLUMNS": "300"})
    assert empty.exit_code == 0, empty.output
    assert f"next: medseg ingest SOURCE... --workspace {site['root'] / 'empty'}" in empty.output
    assert "pending work" not in empty.output and "champion models" not in empty.output  # no empty tables
    ingested = runner.invoke(app, ["status", "-w", str(site["root"] / "ws")], env={"COLUMNS": "300"})
    assert ingested.exit_code == 0, ingested.output
    assert f"next: medseg preprocess --workspace {site['root'] / 'ws'}  (3 cases not preprocessed)" in ingested.output
