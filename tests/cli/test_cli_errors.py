"""CLI contract: clear one-line errors and non-zero exits for bad input."""

from pathlib import Path

from typer.testing import CliRunner

from cli.main import app

runner = CliRunner()


def test_help_lists_every_command() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for cmd in ("demo", "demo-data", "run", "ingest", "preprocess", "train", "infer", "report", "status",
                "catalog", "export"):
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


def test_export_of_an_unknown_case_is_one_line(tmp_path: Path) -> None:
    result = runner.invoke(app, ["export", "case_nope", "--out", str(tmp_path / "x.nii.gz"),
                                 "--workspace", str(tmp_path / "ws")])
    assert result.exit_code == 1
    assert not isinstance(result.exception, KeyError)
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) <= 2 and "no ingested case" in result.output and "'case_nope'" in result.output
    assert "Traceback" not in result.output
