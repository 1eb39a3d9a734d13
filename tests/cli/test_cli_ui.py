"""`medseg ui`: a local Prefect server with the UI in the foreground (address and export line printed,
Ctrl-C stops it), and its errors: a busy port, a server that exits or does not answer in time (the
log's tail shown, nothing left running). Detached use (`--detach`, `--stop`) and runs reporting to the
server are tested with the browser in tests/browser/test_prefect_ui_in_browser.py."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import psutil
import pytest
from typer.testing import CliRunner

from medseg.cli.common import CONFIG_DIR
from medseg.cli.main import app

MEDSEG = Path(sys.executable).with_name("medseg")
runner = CliRunner()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _servers_on(port: int) -> list[psutil.Process]:
    """Processes whose command line starts a server on ``port``."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmd = proc.info["cmdline"] or []
        if "server" in cmd and "--port" in cmd and str(port) in cmd:
            found.append(proc)
    return found


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    env.update(PREFECT_HOME=str(tmp_path / "prefect-home"), COLUMNS="300", **extra)
    return env


def test_foreground_server_serves_the_ui_prints_the_export_line_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    port = _free_port()
    proc = subprocess.Popen([str(MEDSEG), "ui", "--port", str(port)], env=_env(tmp_path), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert proc.stdout is not None
    lines: list[str] = []
    try:
        for line in proc.stdout:  # the server answers before these lines are printed
            lines.append(line)
            if "Ctrl-C stops the server" in line:
                break
        out = "".join(lines)
        assert f"Prefect UI: http://127.0.0.1:{port}\n" in out, out
        assert f"  export PREFECT_API_URL=http://127.0.0.1:{port}/api\n" in out, out
        assert f"Server log: {tmp_path / 'prefect-home' / 'medseg-ui.log'}." in out
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=30) as resp:  # the UI, not only the API
            assert resp.headers.get_content_type() == "text/html" and b"<div id=" in resp.read()
        assert len(_servers_on(port)) == 1
    finally:
        proc.send_signal(signal.SIGINT)
        rest, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out + rest
    assert "Prefect server stopped." in rest
    assert _servers_on(port) == []
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # connections of the test may be in TIME_WAIT
        s.bind(("127.0.0.1", port))  # nothing listens there any more


def test_a_busy_port_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path))
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = runner.invoke(app, ["ui", "--detach", "--port", str(port)], env={"COLUMNS": "300"})
    assert result.exit_code == 1, result.output
    assert f"error: port {port} on 127.0.0.1 is in use by another program: choose another --port" in result.output
    assert not (tmp_path / "medseg-ui.log").exists()  # nothing was started


@pytest.mark.parametrize(("extra_env", "args", "says"), [
    ({"PREFECT_API_DATABASE_CONNECTION_URL": "sqlite+aiosqlite:////no-such-dir/prefect.db"}, (),
     "the Prefect server exited with code"),
    ({}, ("--startup-timeout", "1"), "the Prefect server did not answer within 1 s"),
], ids=["server-exits", "no-answer-in-time"])
def test_a_server_that_does_not_come_up_is_reported_with_its_log(
        tmp_path: Path, extra_env: dict[str, str], args: tuple[str, ...], says: str) -> None:
    port = _free_port()
    result = subprocess.run([str(MEDSEG), "ui", "--detach", "--port", str(port), *args], text=True,
                            capture_output=True, env=_env(tmp_path, **extra_env), timeout=300)
    log = tmp_path / "prefect-home" / "medseg-ui.log"
    assert result.returncode == 1 and result.stdout == "", result
    assert result.stderr.startswith(f"error: {says}") and f"(log: {log})" in result.stderr, result.stderr
    assert log.read_text(errors="replace").strip()[-200:] in result.stderr  # the log's tail
    if "exited" in says:
        assert "unable to open database file" in result.stderr
    assert _servers_on(port) == []  # stopped (and waited for) before the command ended
    assert not (tmp_path / "prefect-home" / "medseg-ui.json").exists()


def test_a_shell_still_set_up_for_a_stopped_server_fails_at_once() -> None:
    """Nothing listens at PREFECT_API_URL (`medseg ui --stop` ran): one line with what to do, before Prefect
    starts (which would retry for ~20 s)."""
    url = f"http://127.0.0.1:{_free_port()}/api"
    result = runner.invoke(app, ["serve", str(CONFIG_DIR / "demo.yaml")],
                           env={"PREFECT_API_URL": url, "COLUMNS": "300"})
    assert result.exit_code == 1, result.output
    assert result.output.startswith(f"error: no Prefect server answers at PREFECT_API_URL={url} (Connection refused)")
    assert "`unset PREFECT_API_URL`" in result.output
