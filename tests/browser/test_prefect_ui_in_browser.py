"""Watching a run: `eval "$(medseg ui --detach)"` in a shell, then `medseg ingest` there reports to that
server, and its Prefect UI flow-run page (headless Chromium) shows the run, its state and the medseg
artifacts; `medseg status` lists the run; `medseg ui --stop` stops the server, and the shell's next
command says so at once.

The commands run as subprocesses with a private ``PREFECT_HOME``, the server on a free port of 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from browser_tab import Tab

from medseg.demo.archive import generate_demo_archive

pytestmark = pytest.mark.browser

MEDSEG = Path(sys.executable).with_name("medseg")
EXPORT_LINE = re.compile(r"export PREFECT_API_URL=(http://127\.0\.0\.1:(\d+)/api)")


@dataclass
class WatchedShell:
    """A shell after `eval "$(medseg ui --detach)"` (its environment) and the run it made."""

    env: dict[str, str]
    api_url: str
    ui_url: str
    home: Path
    workspace: Path
    run: dict[str, Any]

    def api(self, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(f"{self.api_url}{path}", data=data, method="GET" if body is None else "POST",
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as resp:
            return json.loads(resp.read().decode())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def medseg(env: dict[str, str], *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(MEDSEG), *args], env=env, text=True, capture_output=True, timeout=timeout)


@pytest.fixture(scope="module")
def shell(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WatchedShell]:
    root = tmp_path_factory.mktemp("watch")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_API")}
    env.update(PREFECT_HOME=str(root / "prefect-home"), MEDSEG_DEID_SECRET="browser-test-key", COLUMNS="200")
    port = _free_port()
    started = medseg(env, "ui", "--detach", "--port", str(port))
    try:
        assert started.returncode == 0, started.stderr
        found = EXPORT_LINE.fullmatch(started.stdout.strip())  # stdout is exactly what `eval` runs
        assert found and int(found.group(2)) == port, started.stdout
        env["PREFECT_API_URL"] = found.group(1)
        generate_demo_archive(root / "archive", cases=3, seed=1)
        ingested = medseg(env, "ingest", str(root / "archive"), "--workspace", str(root / "ws"))
        assert ingested.returncode == 0, ingested.stdout + ingested.stderr
        watched = WatchedShell(env, found.group(1), f"http://127.0.0.1:{port}", root / "prefect-home", root / "ws", {})
        runs = watched.api("/flow_runs/filter", {})
        assert [r["state_type"] for r in runs] == ["COMPLETED"], runs
        watched.run = runs[0]
        yield watched
    finally:
        medseg(env, "ui", "--stop", timeout=60)


def test_the_shells_commands_report_to_the_ui_server(shell: WatchedShell) -> None:
    flow = shell.api(f"/flows/{shell.run['flow_id']}")
    assert flow["name"] == "medseg-ingest"
    artifacts = shell.api("/artifacts/filter", {"artifacts": {"flow_run_id": {"any_": [shell.run["id"]]}}})
    assert any(a["type"] == "progress" and a["description"].startswith("ingest: volumes 3/3") for a in artifacts), \
        artifacts
    status = medseg(shell.env, "status", "--workspace", str(shell.workspace))
    assert status.returncode == 0, status.stderr
    assert "medseg-ingest" in status.stdout and shell.run["name"] in status.stdout, status.stdout


def test_flow_run_page_shows_the_run_and_its_artifacts(shell: WatchedShell, tab: Tab, screenshot_dir: Path) -> None:
    with urllib.request.urlopen(f"{shell.ui_url}/ui-settings", timeout=30) as resp:
        ui = json.loads(resp.read().decode())
    assert ui["api_url"] == shell.api_url  # the UI calls this server's API
    base = ui[f"{ui['default_ui']}_base_url"].rstrip("/")  # the UI a browser opening the printed URL gets
    page = tab.page
    page.goto(f"{shell.ui_url}{base}/runs/flow-run/{shell.run['id']}")
    header = page.get_by_text(shell.run["name"], exact=True).first
    header.wait_for(timeout=60_000)
    for text in ("Completed", "medseg-ingest"):  # the state and the flow's name load after the run's name
        page.get_by_text(text, exact=True).first.wait_for(state="visible", timeout=30_000)
    page.get_by_text("ingest: done in", exact=False).first.wait_for(timeout=30_000)  # the run's logs (first tab)
    page.screenshot(path=str(screenshot_dir / "prefect-flow-run.png"), full_page=True)

    page.get_by_role("tab", name="Artifacts").click()
    card = page.get_by_text(re.compile(r"ingest: volumes 3/3 \(100%\)")).first
    card.wait_for(timeout=30_000)
    assert card.is_visible()
    page.get_by_text("dask-dashboard-ingest", exact=True).first.wait_for(state="visible", timeout=30_000)
    page.screenshot(path=str(screenshot_dir / "prefect-flow-run-artifacts.png"), full_page=True)
    assert tab.page_errors == []  # console errors are the UI's own (a missing icon, the blocked analytics host)


def test_detach_again_finds_the_server_and_stop_stops_it(shell: WatchedShell) -> None:
    again = medseg(shell.env, "ui", "--detach", "--port", shell.api_url.split(":")[-1].split("/")[0], timeout=60)
    assert again.returncode == 0 and again.stdout.strip() == f"export PREFECT_API_URL={shell.api_url}", again
    assert "already running" in again.stderr
    stopped = medseg(shell.env, "ui", "--stop", timeout=60)
    assert stopped.returncode == 0 and f"stopped the Prefect server at {shell.ui_url}" in stopped.stdout, stopped
    assert not (shell.home / "medseg-ui.json").exists()
    with pytest.raises(OSError):
        urllib.request.urlopen(f"{shell.api_url}/health", timeout=5)
    none = medseg(shell.env, "ui", "--stop", timeout=60)
    assert none.returncode == 0 and "no server started by `medseg ui --detach` runs" in none.stdout, none
    late = medseg(shell.env, "ingest", str(shell.workspace.parent / "archive"), "--workspace", str(shell.workspace))
    assert late.returncode == 1 and late.stderr.startswith(f"error: no Prefect server answers at PREFECT_API_URL="
                                                           f"{shell.api_url}"), late  # at once, with what to do
