"""CLI contract: clear one-line errors and non-zero exits for bad input."""

from pathlib import Path

import pytest
from typer.testing import CliRunner

from medseg.cli.main import app

runner = CliRunner()


def test_help_lists_every_command() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for cmd in ("demo", "demo-data", "run", "ingest", "preprocess", "train", "infer", "report", "status",
                "catalog", "export", "export-dataset", "export-model"):
        assert cmd in result.output


def test_invalid_config_value_names_the_field(tmp_path: Path) -> None:
    result = runner.invoke(app, ["status", "--workspace", str(tmp_path), "--set", "train.max_epochs=-3"])
    assert result.exit_code == 2
    assert "train.max_epochs" in result.output
    assert "Traceback" not in result.output


def test_missing_source_folder_fails_clearly(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-archive"
    result = runner.invoke(app, ["ingest", str(missing), "--workspace", str(tmp_path / "ws")])
    assert result.exit_code != 0
    assert "not found" in result.output and str(missing) in result.output
    assert "Traceback" not in result.output


def test_catalog_without_workspace_says_what_to_run(tmp_path: Path) -> None:
    result = runner.invoke(app, ["catalog", "--workspace", str(tmp_path / "empty")])
    assert result.exit_code == 1
    assert "medseg ingest" in result.output


def test_config_command_prints_effective_values() -> None:
    result = runner.invoke(app, ["config", "--set", "train.max_epochs=3"])
    assert result.exit_code == 0
    assert "max_epochs: 3" in result.output


def test_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == "medseg 0.1.0"


def test_shell_completion_is_enabled() -> None:
    result = runner.invoke(app, ["--show-completion", "bash"], prog_name="medseg")
    assert result.exit_code == 0 and "_MEDSEG_COMPLETE=complete_bash" in result.output


@pytest.mark.parametrize(("command", "shown"), [
    ("ingest", "[default: (the config's workspace, else ./medseg-workspace)]"),
    ("train", "[default: (the config's train.models: cnn, gan)]"),
    ("infer", "<test|pending>"),
    ("infer", "[default: test]"),
    ("export", "<nifti>"),
    ("config", "<demo|default|cpu>"),
    ("bulk", "[default: (ops.bulk_files_per_task)]"),
])
def test_help_shows_choices_and_defaults(command: str, shown: str) -> None:
    result = runner.invoke(app, [command, "--help"], env={"COLUMNS": "250"})
    assert result.exit_code == 0 and shown in result.output, result.output


def test_config_example_prints_the_shipped_file_with_its_comments() -> None:
    result = runner.invoke(app, ["config", "--example", "demo"])
    assert result.exit_code == 0
    assert result.output.startswith("# CI-sized configuration for `medseg demo`")
    overridden = runner.invoke(app, ["config", "--example", "default", "--set", "train.max_epochs=7"])
    assert overridden.exit_code == 0 and "max_epochs: 7" in overridden.output and "n_workers: 8" in overridden.output
