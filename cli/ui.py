"""``medseg ui``: a local Prefect server with its UI, to watch medseg runs live (:mod:`medseg.cli.ui_server`)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from medseg.cli.common import console, err_console, fail, guard_children
from medseg.cli.ui_server import (
    UIServer,
    UIServerError,
    check_address_free,
    log_tail,
    prefect_home,
    remember,
    remembered,
    start_server,
    stop_group,
    stop_remembered,
)


def ui_command(
    port: Annotated[int, typer.Option("--port", "-p", min=1, max=65535, help="TCP port of the server")] = 4200,
    host: Annotated[str, typer.Option(
        "--host", help="address to listen on (the server has no authentication: keep it on 127.0.0.1)")
    ] = "127.0.0.1",
    detach: Annotated[bool, typer.Option(
        "--detach", "-d", help="leave the server running and print only the export line, for "
                               "`eval \"$(medseg ui --detach)\"`")] = False,
    stop: Annotated[bool, typer.Option("--stop", help="stop the server started by `medseg ui --detach`")] = False,
    startup_timeout: Annotated[float, typer.Option(
        "--startup-timeout", min=1, help="seconds to wait for the server to answer")] = 120.0,
) -> None:
    """Start a local Prefect server with its UI; medseg commands report to it once PREFECT_API_URL is exported.

    In the foreground (Ctrl-C stops it) it prints the UI address and the `export PREFECT_API_URL=...` line
    for other shells. `eval "$(medseg ui --detach)"` starts it in the background (or finds the one already
    started) and makes the current shell's later commands report to it; `medseg ui --stop` stops it.
    Runs, task states, logs and artifacts then show at http://127.0.0.1:4200, and `medseg status` lists
    the last flow runs. The run history stays in PREFECT_HOME between starts.
    """
    if stop and detach:
        raise fail("--stop and --detach exclude each other: --stop stops the server that --detach started")
    home = prefect_home()
    if stop:
        stopped = stop_remembered(home)
        console.print(f"stopped the Prefect server at {stopped.ui_url} (`unset PREFECT_API_URL` in the shells "
                      "that reported to it)" if stopped
                      else f"no server started by `medseg ui --detach` runs (none recorded in {home})",
                      highlight=False, soft_wrap=True)
        return
    running = remembered(home)
    if running is not None:
        if detach and (running.host, running.port) == (host, port):
            err_console.print(f"Prefect UI already running at {running.ui_url} (`medseg ui --stop` stops it)",
                              highlight=False, soft_wrap=True)
            typer.echo(running.export_line)
            return
        raise fail(f"a server started by `medseg ui --detach` already runs at {running.ui_url} (use it with "
                   f"`{running.export_line}`, or stop it with `medseg ui --stop`)", code=1)
    try:
        check_address_free(host, port)  # before anything starts
        if not detach:
            guard_children()  # a foreground server dies with this command, even after kill -9
        server = start_server(host, port, home, startup_timeout)
    except UIServerError as exc:
        raise fail(str(exc), code=1) from None
    if detach:
        remember(server, home)
        err_console.print(f"Prefect UI at {server.ui_url} (log: {server.log}; `medseg ui --stop` stops it)",
                          highlight=False, soft_wrap=True)
        typer.echo(server.export_line)
        return
    _serve_in_foreground(server)


def _serve_in_foreground(server: UIServer) -> None:
    """Print where the UI is and how to report to it, then wait for Ctrl-C (or the server's end)."""
    console.print(f"Prefect UI: [bold]{server.ui_url}[/]", highlight=False)
    console.print("Make medseg commands in a shell report to it (runs then show live in the UI):", highlight=False)
    console.print(f"  {server.export_line}", highlight=False, soft_wrap=True)
    console.print(f"Server log: {server.log}. Ctrl-C stops the server.", highlight=False, soft_wrap=True)
    try:
        _, status = os.waitpid(server.pid, 0)
    except KeyboardInterrupt:
        stop_group(server.pid)
        console.print("Prefect server stopped.")
        return
    raise fail(f"the Prefect server ended (exit status {os.waitstatus_to_exitcode(status)}; log: {server.log}):\n"
               f"{log_tail(Path(server.log))}", code=1)
