"""Start LocalCluster workers by forking them from a preloaded server instead of spawning fresh interpreters.

A spawned Dask worker imports ``distributed`` and medseg's decoders before its first task: ~0.7 s of
CPU per worker, on the cores the run needs. Python's ``forkserver`` start method runs one server
process that imports them once and forks every worker from that state (single-threaded, so the
fork is safe; a worker is ready in milliseconds).

Entry points that will start a LocalCluster call :func:`start_fork_server` first thing, before
their own imports: the server then does its imports on an otherwise idle core while the entry
point imports, reads its config or starts Prefect (``medseg ingest`` does). :func:`start_method`
(called by :func:`medseg.parallel.dask_client`) starts the server itself if no entry point did.

The server's environment is fixed when it starts, and workers inherit it: glibc's malloc
thresholds (read once per process; see :data:`WORKER_MALLOC_ENV`) and one BLAS thread per Dask
thread. A LocalCluster with another ``threads_per_worker`` spawns its workers as before.

This module imports only the standard library: it runs before anything else is imported.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Final

log = logging.getLogger(__name__)

# Dask starts local workers with MALLOC_TRIM_THRESHOLD_=64 KiB. Setting any glibc malloc threshold
# turns off glibc's adaptive mmap threshold, so every array above 128 KiB (a decoded slice stack,
# a compressed chunk) is then a fresh mmap: page faults and zeroing on each allocation, ~30 % of a
# worker's CPU time during ingest. Medium arrays come from the heap instead, and free memory is
# returned to the OS above 64 MiB.
WORKER_MALLOC_ENV: Final = {"MALLOC_MMAP_THRESHOLD_": str(32 << 20), "MALLOC_TRIM_THRESHOLD_": str(64 << 20)}
BLAS_THREAD_VARS: Final = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")

#: What every Dask worker imports.
DASK_WORKER_MODULES: Final = ("distributed.nanny", "distributed.worker", "numpy")
#: What an ingest worker imports before its first header or volume task (pydicom: ~0.25 s); on a
#: standing cluster, :class:`medseg.ingest.run._WarmWorkers` imports them.
INGEST_WORKER_MODULES: Final = (
    "pydicom",
    "medseg.ingest.build",
    "medseg.ingest.headers",
    "medseg.ingest.run",  # the tasks' functions live here
    "medseg.ingest.study_groups",
)

_lock = threading.Lock()
_server_threads: int | None = None  # threads_per_worker of the running server's BLAS environment


@contextmanager
def temporary_environ(env: Mapping[str, str]) -> Iterator[None]:
    """Set ``env`` in ``os.environ`` (inherited by processes started meanwhile); restore it after."""
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def fork_server_available() -> bool:
    """The platform has the ``forkserver`` start method (Linux, macOS; not Windows)."""
    return "forkserver" in multiprocessing.get_all_start_methods()


def _in_child_process() -> bool:
    """This process was started by multiprocessing (``_inheriting``: it is still unpickling its
    bootstrap data, e.g. running the parent's main script as ``__mp_main__``)."""
    current = multiprocessing.current_process()
    return multiprocessing.parent_process() is not None or bool(getattr(current, "_inheriting", False))


def start_fork_server(threads_per_worker: int = 1, modules: Sequence[str] = INGEST_WORKER_MODULES) -> bool:
    """Start the fork server in the background (a few ms here); its imports run in its own process.

    Idempotent: a running server is kept (with the modules and environment it started with). Does
    nothing in a process started by multiprocessing, e.g. a worker that runs the main script again
    as ``__mp_main__`` while it starts (a worker cannot start processes at that point).

    Returns:
        True when a server for workers with ``threads_per_worker`` threads runs (now or before).
    """
    global _server_threads
    if not fork_server_available() or _in_child_process():
        return False
    from multiprocessing import forkserver

    with _lock:
        if _server_threads is None:
            multiprocessing.get_context("forkserver").set_forkserver_preload(
                list(dict.fromkeys((*DASK_WORKER_MODULES, *modules)))
            )
            env = {**WORKER_MALLOC_ENV, **{k: str(threads_per_worker) for k in BLAS_THREAD_VARS}}
            with temporary_environ(env):  # the server inherits this process's environment when it starts
                forkserver.ensure_running()
            _server_threads = threads_per_worker
        return _server_threads == threads_per_worker


def start_method(threads_per_worker: int) -> str:
    """The multiprocessing start method for a LocalCluster's workers: ``forkserver`` when a server
    with their environment runs (started here if needed), else ``spawn``."""
    if start_fork_server(threads_per_worker):
        return "forkserver"
    if fork_server_available():
        log.debug("fork server runs with %s BLAS thread(s), not %d: spawning the workers",
                  _server_threads, threads_per_worker)
    return "spawn"
