"""A real Prefect server (and worker) as subprocesses on 127.0.0.1 for deployment tests.

Everything runs with ``PREFECT_HOME`` in a temporary folder, analytics and UI off, and the
project venv's ``prefect`` script; the processes are stopped (SIGTERM, then SIGKILL) on exit.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
PREFECT = Path(sys.executable).with_name("prefect")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class PrefectServer:
    api_url: str
    env: dict[str, str]
    home: Path
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def api(self, method: str, path: str, body: Any = None, timeout: float = 30) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(f"{self.api_url}{path}", data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            text = resp.read().decode()
        return json.loads(text) if text else None

    def cli(self, *args: str, timeout: float = 180, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([str(PREFECT), "--no-prompt", *args], cwd=REPO, env=self.env, text=True,
                              capture_output=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise RuntimeError(f"prefect {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
        return proc

    def spawn(self, args: list[str], log_name: str, cwd: Path = REPO,
              env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        with open(self.home / log_name, "wb") as fh:
            proc = subprocess.Popen(args, cwd=cwd, env=env or self.env, stdout=fh, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        self.procs.append(proc)
        return proc

    def log(self, name: str) -> str:
        path = self.home / name
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""


def image_env(dockerfile: str = "Dockerfile") -> dict[str, str]:
    """The ``ENV`` of an image of ``deploy/`` (``KEY=value`` pairs, continuation lines joined)."""
    text = (REPO / "deploy" / dockerfile).read_text().replace("\\\n", " ")
    env: dict[str, str] = {}
    for line in re.findall(r"^ENV (.+)$", text, flags=re.M):
        env.update(pair.split("=", 1) for pair in line.split())
    return env


def image_layout(tmp: Path) -> Path:
    """What the images hold at their WORKDIR /opt/medseg: deploy/ only (no checkout, no .venv)."""
    opt = tmp / "opt" / "medseg"
    shutil.copytree(REPO / "deploy", opt / "deploy")
    return opt


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)  # the process group: the server's/worker's children too
    except ProcessLookupError:
        return
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


@contextmanager
def prefect_server(tmp: Path, extra_env: dict[str, str] | None = None, timeout: float = 120) -> Iterator[PrefectServer]:
    """``prefect server start`` on a free port of 127.0.0.1 with a private PREFECT_HOME."""
    home = tmp / "prefect-home"
    home.mkdir(parents=True, exist_ok=True)
    port = free_port()
    env = dict(os.environ)
    env.update(
        PREFECT_HOME=str(home),
        PREFECT_API_URL=f"http://127.0.0.1:{port}/api",
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        PREFECT_UI_ENABLED="false",
        PREFECT_SERVER_API_HOST="127.0.0.1",
        PREFECT_SERVER_API_PORT=str(port),
        PYTHONPATH=str(REPO),
    )
    env.update(extra_env or {})
    server = PrefectServer(f"http://127.0.0.1:{port}/api", env, home)
    try:
        proc = server.spawn([str(PREFECT), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                            "server.log")
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"prefect server exited:\n{server.log('server.log')}")
            try:
                server.api("GET", "/health", timeout=2)
                break
            except (urllib.error.URLError, OSError):
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"prefect server not healthy after {timeout}s:\n{server.log('server.log')}") from None
                time.sleep(0.5)
        yield server
    finally:
        for p in reversed(server.procs):
            _stop(p)


def wait_for_flow_run(server: PrefectServer, run_id: str, timeout: float) -> dict[str, Any]:
    """Poll the flow run until it is in a final state; return it.

    A poll the server does not answer in time (its SQLite server starved by the run's training on a
    2-core machine) is retried until ``timeout``; the run's final state is what the caller checks.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            run: dict[str, Any] = server.api("GET", f"/flow_runs/{run_id}")
        except (TimeoutError, urllib.error.URLError):
            if time.monotonic() > deadline:
                raise
            time.sleep(1)
            continue
        state = (run.get("state") or {}).get("type")
        if state in {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}:
            return run
        if time.monotonic() > deadline:
            raise TimeoutError(f"flow run {run_id} still {state} after {timeout}s")
        time.sleep(1)
