"""A local Prefect server with its UI, started for ``medseg ui``: start, wait until healthy, remember, stop.

The server is ``python -m prefect server start --ui`` in its own session (so a terminal's Ctrl-C or the
end of ``medseg ui --detach`` does not reach it), its output in ``$PREFECT_HOME/medseg-ui.log``. A
detached server is remembered in ``$PREFECT_HOME/medseg-ui.json`` (pid, URLs, log) so that a later
``medseg ui --stop`` (or ``medseg ui --detach`` again) finds it. Its database is Prefect's usual one in
``PREFECT_HOME``: the run history stays from one server start to the next.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path

from medseg.io.json_file import write_text_atomic

STATE_NAME = "medseg-ui.json"
LOG_NAME = "medseg-ui.log"
LOG_TAIL_CHARS = 3000
STOP_GRACE_S = 15.0


class UIServerError(RuntimeError):
    """The server cannot start (address in use, not listenable) or did not come up (message has the log tail)."""


@dataclass(frozen=True)
class UIServer:
    """A Prefect server with the UI listening on ``host:port``.

    Attributes:
        pid: process id of the server (leader of its own session, so of its process group).
        host: address it listens on.
        port: TCP port.
        log: file with the server's output.
    """

    pid: int
    host: str
    port: int
    log: str

    @property
    def ui_url(self) -> str:
        """Where a browser on this machine opens the UI (a wildcard address is reached at 127.0.0.1)."""
        return f"http://{client_host(self.host)}:{self.port}"

    @property
    def api_url(self) -> str:
        """The value of ``PREFECT_API_URL`` that makes a shell's ``medseg`` commands report to this server."""
        return f"{self.ui_url}/api"

    @property
    def export_line(self) -> str:
        return f"export PREFECT_API_URL={self.api_url}"


def client_host(host: str) -> str:
    """``host`` as a client reaches it: 127.0.0.1 for the wildcard addresses, brackets around IPv6."""
    if host in {"0.0.0.0", "", "::"}:
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host


def prefect_home() -> Path:
    """Prefect's home folder: ``$PREFECT_HOME``, else the active profile's, else ``~/.prefect``.

    The variable is read here, not through Prefect's settings, which keep the value of the moment Prefect
    was imported."""
    if os.environ.get("PREFECT_HOME"):
        return Path(os.environ["PREFECT_HOME"]).expanduser()
    from prefect.settings import PREFECT_HOME

    return Path(PREFECT_HOME.value()).expanduser()


def check_address_free(host: str, port: int) -> None:
    """Raise :class:`UIServerError` when nothing can listen on ``host:port`` (in use, not an address here).

    A Prefect server already answering there is named, with the line that uses it.
    """
    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE:
            raise UIServerError(f"cannot listen on {host}:{port}: {exc.strerror or exc} (--host must be an address "
                                "of this machine, e.g. 127.0.0.1)") from None
        url = f"http://{client_host(host)}:{port}/api"
        if healthy(url):
            raise UIServerError(f"port {port} on {host} is in use by a Prefect server already: use it with "
                                f"`export PREFECT_API_URL={url}`, stop it (`medseg ui --stop` stops one started by "
                                "`medseg ui --detach`) or choose another --port") from None
        raise UIServerError(f"port {port} on {host} is in use by another program: choose another --port") from None


def healthy(api_url: str, timeout: float = 2.0) -> bool:
    """Whether the Prefect API at ``api_url`` answers its health check."""
    try:
        with urllib.request.urlopen(f"{api_url}/health", timeout=timeout) as resp:
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError, ValueError):
        return False


def server_env(host: str, port: int) -> dict[str, str]:
    """The server's environment: this one, with the UI on, the API on ``host:port`` and the UI calling it there.

    ``PREFECT_API_URL`` is set to the server itself, so a shell's URL of another server never leaks into it.
    """
    api = f"http://{client_host(host)}:{port}/api"
    env = dict(os.environ)
    env.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    env.update(
        PREFECT_SERVER_UI_ENABLED="true",
        PREFECT_UI_ENABLED="true",  # the older name, which medseg's commands set to false for their temporary server
        PREFECT_SERVER_UI_API_URL=api,
        PREFECT_UI_API_URL=api,
        PREFECT_SERVER_API_HOST=host,
        PREFECT_SERVER_API_PORT=str(port),
        PREFECT_API_URL=api,
    )
    return env


def log_tail(path: Path, chars: int = LOG_TAIL_CHARS) -> str:
    try:
        return path.read_text(errors="replace")[-chars:].strip()
    except OSError:
        return ""


def start_server(host: str, port: int, home: Path, timeout: float) -> UIServer:
    """Start the server, return once its API is healthy.

    Args:
        host: address to listen on.
        port: TCP port.
        home: ``PREFECT_HOME`` (the log goes there).
        timeout: seconds to wait for the health check.

    Raises:
        UIServerError: the address is not free, or the server exited or did not answer within ``timeout``
            (then it is stopped; the message holds the log's tail).
    """
    check_address_free(host, port)
    home.mkdir(parents=True, exist_ok=True)
    log = home / LOG_NAME
    cmd = [sys.executable, "-m", "prefect", "server", "start", "--host", host, "--port", str(port), "--ui"]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, env=server_env(host, port), stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    server = UIServer(pid=proc.pid, host=host, port=port, log=str(log))
    deadline = time.monotonic() + timeout
    try:
        while not healthy(server.api_url):
            code = proc.poll()
            if code is not None or time.monotonic() > deadline:
                why = f"exited with code {code}" if code is not None else f"did not answer within {timeout:g} s"
                raise UIServerError(f"the Prefect server {why} (log: {log}):\n{log_tail(log)}")
            time.sleep(0.5)
    except BaseException:  # also Ctrl-C while waiting: no server is left behind
        stop_group(proc.pid)
        proc.wait()
        raise
    return server


def stop_group(pid: int, grace: float = STOP_GRACE_S) -> bool:
    """SIGTERM the process group of ``pid`` (the server and whatever it started), SIGKILL after ``grace`` s.

    Returns:
        Whether the group was still there to be stopped.
    """
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + grace
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    if _alive(pid):
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return True


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, already exited, does not)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read()
    except OSError:
        return False
    return stat[stat.rfind(b")") + 2 :].split()[0] != b"Z"


def _is_prefect_server(pid: int) -> bool:
    """Whether ``pid`` still is a ``prefect server start`` (not a recycled pid)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            args = fh.read().split(b"\0")
    except OSError:
        return False
    return b"prefect" in args and b"server" in args and b"start" in args


def remember(server: UIServer, home: Path) -> Path:
    """Write the state file of a detached server."""
    path = home / STATE_NAME
    write_text_atomic(path, json.dumps(asdict(server), indent=2) + "\n")
    return path


def remembered(home: Path) -> UIServer | None:
    """The detached server recorded in ``home``, if it still runs; a stale or unreadable record is removed."""
    path = home / STATE_NAME
    try:
        server = UIServer(**json.loads(path.read_text()))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, TypeError):
        path.unlink(missing_ok=True)
        return None
    if not (_alive(server.pid) and _is_prefect_server(server.pid)):
        path.unlink(missing_ok=True)
        return None
    return server


def stop_remembered(home: Path) -> UIServer | None:
    """Stop the detached server recorded in ``home`` and forget it; None when there is none."""
    server = remembered(home)
    if server is not None:
        stop_group(server.pid)
        (home / STATE_NAME).unlink(missing_ok=True)
    return server
