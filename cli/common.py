"""Shared CLI plumbing: Prefect environment defaults, config loading, clean error exits."""

from __future__ import annotations

import os
import socket
import sqlite3
import urllib.parse
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import typer
from pydantic import SecretStr
from rich.console import Console

from medseg.cli.child_reaper import start_child_reaper
from medseg.cli.fork_server import start_fork_server
from medseg.config import MedsegConfig
from medseg.config_loader import ConfigError, load_config
from medseg.workspace import Workspace

console = Console()
err_console = Console(stderr=True)
T = TypeVar("T")

#: the shipped configs (demo, default): ``configs/`` beside ``cli/`` in a checkout, ``medseg/configs`` (package
#: data) beside ``medseg/cli`` in an installed wheel
CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"

DEID_SECRET_ENV = "MEDSEG_DEID_SECRET"

PREFECT_DEFAULTS = {
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "90",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_UI_ENABLED": "false",
    "PREFECT_LOGGING_EXTRA_LOGGERS": "medseg",  # library log lines (e.g. Dask dashboard link) reach run logs
}


def prefect_env() -> None:
    """Defaults for the embedded Prefect server; a user's PREFECT_API_URL / settings win.

    Also starts the child reaper once per process: the temporary Prefect server and the LocalCluster
    this command starts die with it, even after ``kill -9`` (:mod:`medseg.cli.child_reaper`).
    """
    check_api_reachable()
    for key, value in PREFECT_DEFAULTS.items():
        os.environ.setdefault(key, value)
    guard_children()


def check_api_reachable() -> None:
    """Fail at once when ``PREFECT_API_URL`` names a server nothing answers at (refused, no such host),
    e.g. a shell still set up for a server that ``medseg ui --stop`` stopped; Prefect would retry for
    ~20 s first. A slow server (a timeout) is left to Prefect's own retries.

    Raises:
        typer.Exit: one line naming the URL and what to do (code 1).
    """
    url = os.environ.get("PREFECT_API_URL")
    if not url:
        return
    parts = urllib.parse.urlsplit(url)
    host, port = parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80)
    try:
        socket.create_connection((host, port), timeout=5).close()
    except (ConnectionRefusedError, socket.gaierror) as exc:
        if isinstance(exc, socket.gaierror) and exc.errno != socket.EAI_NONAME:
            return  # a DNS hiccup (EAI_AGAIN): Prefect's retries may still get through
        raise fail(f"no Prefect server answers at PREFECT_API_URL={url} ({exc.strerror or exc}): start it "
                   "(`eval \"$(medseg ui --detach)\"` for a local one) or `unset PREFECT_API_URL` to run "
                   "on a temporary server", code=1) from None
    except OSError:
        return


_REAPER: list[int | None] = []


def guard_children() -> None:
    """Start :func:`medseg.cli.child_reaper.start_child_reaper` unless this process has one."""
    if not _REAPER:
        _REAPER.append(start_child_reaper())


def start_local_workers(cfg: MedsegConfig, preload: Sequence[str] = ()) -> None:
    """Start the fork server of the LocalCluster's workers now, importing ``preload`` (the modules
    of the command's tasks; :mod:`medseg.cli.fork_server`): its
    imports run on an idle core while Prefect starts. Nothing to do on an existing Dask cluster.

    The child reaper starts first (see :func:`prefect_env`): it then owns no thread or child yet."""
    guard_children()
    if cfg.dask.address is None:
        start_fork_server(cfg.dask.threads_per_worker, preload)


def fail(message: str, code: int = 2) -> typer.Exit:
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def build_config(config: Path | None, overrides: list[str] | None, workspace: Path | None = None,
                 sources: list[Path] | None = None) -> MedsegConfig:
    """Load the YAML config, apply ``--set`` overrides and explicit CLI options (which win).

    ``MEDSEG_DEID_SECRET`` in the environment is the de-identification key when neither the config nor
    ``--set`` gives ``ingest.deid_secret``.
    """
    items = list(overrides or [])
    if workspace is not None:
        items.append(f"workspace={workspace}")
    try:
        cfg = load_config(config, items)
    except ConfigError as exc:
        raise fail(str(exc)) from None
    if sources:
        cfg = cfg.model_copy(update={"sources": [Path(s) for s in sources]})
    env_key = os.environ.get(DEID_SECRET_ENV)
    if env_key and cfg.ingest.deid_secret is None:
        if len(env_key) < 8:
            raise fail(f"{DEID_SECRET_ENV} must have at least 8 characters")
        cfg = cfg.model_copy(update={"ingest": cfg.ingest.model_copy(update={"deid_secret": SecretStr(env_key)})})
    return cfg


def require_workspace(cfg: MedsegConfig, needs: Callable[[Workspace], Path] | None = None, then: str = "") -> Workspace:
    """The workspace of ``cfg``, which must exist (and hold ``needs``, the output of an earlier stage).

    Raises:
        typer.Exit: one line naming what is missing and the command that makes it (code 1). Nothing
            is created: commands check their inputs before they start Prefect or write anything.
    """
    ws = Workspace.at(cfg.workspace)
    if not ws.root.is_dir():
        raise fail(f"no workspace at {ws.root}: start with `medseg ingest SOURCE... --workspace {cfg.workspace}` "
                   "(or `medseg demo`)", code=1)
    if needs is not None and not needs(ws).exists():
        raise fail(f"{needs(ws)} not found: run `{then} --workspace {cfg.workspace}` first", code=1)
    return ws


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, KeyError) and exc.args:  # str(KeyError) quotes its message
        return str(exc.args[0])
    if isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc):
        return f"the workspace catalog is locked ({exc}): another medseg process is writing it; retry when it ends"
    if isinstance(exc, sqlite3.Error):
        return f"catalog database error: {exc}"
    return str(exc)


@contextmanager
def friendly_errors() -> Iterator[None]:
    """Turn expected failures into one red line and a non-zero exit (tracebacks stay in the Prefect logs).

    Expected: bad configs, missing files or folders, unknown ids (``KeyError``), unreadable or
    corrupt inputs (``ValueError``, ``RuntimeError`` such as a corrupt model bundle), file system
    errors (``OSError``: permissions, disk full) and a locked or damaged catalog (``sqlite3.Error``).
    """
    try:
        yield
    except typer.Exit:
        raise
    except (ConfigError, KeyError, OSError, ValueError, RuntimeError, sqlite3.Error) as exc:
        raise fail(_one_line(exc), code=1) from None


def run_quietly(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    with friendly_errors():
        return fn(*args, **kwargs)


def recent_flow_runs(limit: int = 10) -> list[dict[str, Any]] | None:
    """The last flow runs of the Prefect server at ``$PREFECT_API_URL`` (None when unset or unreachable).

    Without ``PREFECT_API_URL`` there is no persistent server to ask (the embedded one only lives
    for the duration of a command), so nothing is started.
    """
    if not os.environ.get("PREFECT_API_URL"):
        return None
    try:
        from prefect.client.orchestration import get_client
        from prefect.client.schemas.sorting import FlowRunSort

        with get_client(sync_client=True) as client:
            client.api_healthcheck()
            runs = client.read_flow_runs(sort=FlowRunSort.START_TIME_DESC, limit=limit)
            flows = {f.id: f.name for f in client.read_flows(limit=200)}
    except Exception:  # noqa: BLE001 - status must work without a server
        return None
    return [
        {
            "flow": flows.get(r.flow_id, str(r.flow_id)),
            "run": r.name,
            "state": r.state.name if r.state else "?",
            "start": r.start_time.strftime("%Y-%m-%d %H:%M:%S") if r.start_time else "",
            "seconds": round(r.total_run_time.total_seconds(), 1) if r.total_run_time else None,
        }
        for r in runs
    ]


def ensure_gpu_limit(slots: int = 1) -> str:
    """Create the tag concurrency limit ``gpu`` (one training task at a time) unless it exists."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        try:
            existing = client.read_concurrency_limit_by_tag("gpu")
            return f"gpu concurrency limit exists ({existing.concurrency_limit} slot(s))"
        except Exception:  # noqa: BLE001 - ObjectNotFound
            client.create_concurrency_limit(tag="gpu", concurrency_limit=slots)
            return f"created gpu concurrency limit ({slots} slot(s))"
