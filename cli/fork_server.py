"""Start the fork server of the LocalCluster's workers (:mod:`medseg.runtime.fork_server`).

Entry points that will start a LocalCluster call :func:`start_fork_server` first thing, before
their own imports: the server then does its imports on an otherwise idle core while the entry
point imports, reads its config or starts Prefect (``medseg ingest`` does).

This module imports only the standard library (and the stdlib-only record of the server).
"""

from __future__ import annotations

import multiprocessing
import threading
from collections.abc import Sequence

from medseg.runtime.fork_server import (
    DASK_WORKER_MODULES,
    environ_for_children,
    fork_server_available,
    record_fork_server,
    server_environ,
)

_lock = threading.Lock()


def _in_child_process() -> bool:
    """This process was started by multiprocessing (``_inheriting``: it is still unpickling its
    bootstrap data, e.g. running the parent's main script as ``__mp_main__``)."""
    current = multiprocessing.current_process()
    return multiprocessing.parent_process() is not None or bool(getattr(current, "_inheriting", False))


def start_fork_server(threads_per_worker: int = 1, preload: Sequence[str] = ()) -> bool:
    """Start the fork server in the background (a few ms here); its imports (Dask's worker modules
    and ``preload``) run in its own process.

    Idempotent: a running server is kept (with the modules and environment it started with). Does
    nothing in a process started by multiprocessing, e.g. a worker that runs the main script again
    as ``__mp_main__`` while it starts (a worker cannot start processes at that point).

    Returns:
        True when a server for workers with ``threads_per_worker`` threads runs (now or before).
    """
    if not fork_server_available() or _in_child_process():
        return False
    from multiprocessing import forkserver

    from medseg.runtime import fork_server as record

    with _lock:
        if record.running_fork_server() is None:
            modules = list(dict.fromkeys((*DASK_WORKER_MODULES, *preload)))
            multiprocessing.get_context("forkserver").set_forkserver_preload(modules)
            # the server inherits this process's environment when it starts; this process keeps its own
            with environ_for_children(server_environ(threads_per_worker)):
                forkserver.ensure_running()
            record_fork_server(threads_per_worker, modules)
    server = record.running_fork_server()
    return server is not None and server.threads_per_worker == threads_per_worker
