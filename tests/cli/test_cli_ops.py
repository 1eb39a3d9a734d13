"""CLI of operations: `status` (runs, queue, champions), `serve` deployments, `nightly`/`bulk` argument errors."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from medseg.cli.main import app, served_deployments
from medseg.config_loader import load_config
from medseg.ops.bulk import write_manifest
from medseg.stage_record import save_record
from medseg.workspace import Workspace

runner = CliRunner()


def _fake_workspace(root: Path, archive: Path) -> Workspace:
    ws = Workspace.at(root).ensure()
    save_record(ws, "ingest", "k1", [], {"files_indexed": 36, "series_ingested": 1, "quarantined": 0},
                time.time() - 12.5)
    bundle = ws.model_family_dir("cnn") / "20260101T000000Z-abcdef12"
    bundle.mkdir(parents=True)
    (bundle / "metadata.json").write_text("{}")
    ws.champion_path("cnn").write_text(json.dumps({
        "version": bundle.name, "val_mean_dice": 0.8731, "promoted_at": "2026-01-01T00:00:00+00:00",
        "reason": "no champion yet"}))
    ws.champion_path("gan").parent.mkdir(parents=True)
    ws.champion_path("gan").write_text(json.dumps({"version": "gone"}))
    archive.mkdir()
    for i in range(5):
        (archive / f"f{i}.dcm").write_bytes(b"x" * i)
    write_manifest([archive], ws, files_per_task=2)
    return ws


def test_status_shows_runs_queue_and_champions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    ws = _fake_workspace(tmp_path / "ws", tmp_path / "archive")
    result = runner.invoke(app, ["status", "--workspace", str(ws.root), "--set", f"sources=[{tmp_path / 'archive'}]",
                                 "--scan"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    out = result.output
    assert "ingest" in out and "completed" in out and "files_indexed=36" in out and "12." in out
    assert re.search(r"files not yet indexed\s+│\s+5 │", out)
    assert re.search(r"bulk batches left \(latest manifest\)\s+│\s+3 │", out)  # 5 files / 2 per task, none done
    assert "20260101T000000Z-abcdef12" in out and "0.873" in out
    # the gan pointer names a missing bundle: shown as an error
    assert re.search(r"gan\s+│ gone .*models/gan/gone missing", out)
    assert "Prefect flow runs" not in out  # no PREFECT_API_URL: no server is started


def test_serve_builds_the_three_deployments_with_the_configured_schedule(tmp_path: Path) -> None:
    cfg_file = tmp_path / "site.yaml"
    cfg_file.write_text("ops:\n  nightly_cron: '30 1 * * *'\n  timezone: America/New_York\n")
    deps = served_deployments(cfg_file, load_config(cfg_file))
    assert [d.name for d in deps] == ["nightly-retrain", "bulk-ingest", "batch-infer"]
    nightly = deps[0]
    assert nightly.parameters == {"config_path": str(cfg_file.resolve())}
    sched = nightly.schedules[0].schedule
    assert (sched.cron, sched.timezone) == ("30 1 * * *", "America/New_York")
    assert not deps[1].schedules and not deps[2].schedules


def test_serve_without_a_server_says_how_to_start_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    cfg_file = tmp_path / "site.yaml"
    cfg_file.write_text("name: x\n")
    result = runner.invoke(app, ["serve", str(cfg_file)])
    assert result.exit_code == 2 and "eval \"$(medseg ui --detach)\"" in result.output


@pytest.mark.parametrize("command", ["nightly", "bulk"])
def test_ops_commands_reject_a_bad_config_in_one_line(tmp_path: Path, command: str) -> None:
    cfg_file = tmp_path / "site.yaml"
    cfg_file.write_text("ops:\n  bulk_files_per_task: 0\n")
    result = runner.invoke(app, [command, str(cfg_file)])
    assert result.exit_code == 2
    assert "ops.bulk_files_per_task" in result.output and "Traceback" not in result.output


def test_help_lists_the_ops_commands() -> None:
    out = runner.invoke(app, ["--help"]).output
    for cmd in ("serve", "nightly", "bulk", "status"):
        assert cmd in out


def test_status_imports_neither_torch_nor_prefect(tmp_path: Path) -> None:
    """`medseg status` only reads a few files: it was taking 7 s importing torch and MONAI (model bundle module)."""
    import subprocess
    import sys

    (tmp_path / "ws").mkdir()
    code = ("import sys; from typer.testing import CliRunner; from medseg.cli.main import app; "
            f"r = CliRunner().invoke(app, ['status', '-w', {str(tmp_path / 'ws')!r}]); "
            "print(r.exit_code, sorted(m for m in ('torch', 'monai', 'prefect') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120).stdout
    assert out.strip().splitlines()[-1] == "0 []", out
