"""LocalCluster workers forked from a preloaded server instead of spawned as fresh interpreters.

A spawned Dask worker imports ``distributed`` and the modules of its tasks before its first task:
~0.7 s of CPU per worker, on the cores the run needs. Python's ``forkserver`` start method runs one
server process that imports them once and forks every worker from that state (single-threaded, so
the fork is safe; a worker is ready in milliseconds).

The server is entry-point plumbing: an entry point that will start a LocalCluster starts it first
thing, naming the modules its workers will need (:func:`medseg.cli.fork_server.start_fork_server`;
the server's environment, :func:`server_environ`, is set for that process only) and records it here
(:func:`record_fork_server`). :func:`start_method` (called by
:func:`medseg.runtime.cluster.dask_client`) forks the workers from a recorded server whose
environment fits, and spawns them otherwise: library code never starts the server, nor changes the
environment of its host process for it.

The server's environment is fixed when it starts, and workers inherit it: glibc's malloc thresholds
(read once per process; see :data:`WORKER_MALLOC_ENV`) and one BLAS thread per Dask thread. A
LocalCluster with another ``threads_per_worker`` spawns its workers.

This module imports only the standard library: entry points import it before anything else.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
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


def blas_environ(threads_per_worker: int) -> dict[str, str]:
    """One BLAS thread per Dask thread of a worker."""
    return {k: str(threads_per_worker) for k in BLAS_THREAD_VARS}


@contextmanager
def environ_for_children(env: Mapping[str, str]) -> Iterator[None]:
    """``env`` in ``os.environ`` while child processes start (they inherit it), restored after.

    The one place medseg touches its host's environment, and only for the moment a child starts: a
    child process (the fork server, a spawned worker) takes its BLAS threads and malloc settings from
    the environment it is started from.
    """
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


def server_environ(threads_per_worker: int) -> dict[str, str]:
    """The environment of a fork server for workers with ``threads_per_worker`` threads."""
    return {**WORKER_MALLOC_ENV, **blas_environ(threads_per_worker)}


def fork_server_available() -> bool:
    """The platform has the ``forkserver`` start method (Linux, macOS; not Windows)."""
    return "forkserver" in multiprocessing.get_all_start_methods()


@dataclass(frozen=True)
class ForkServer:
    """The fork server this process started: its workers' threads and what it imported."""

    threads_per_worker: int
    modules: tuple[str, ...]


_lock = threading.Lock()
_server: ForkServer | None = None


def record_fork_server(threads_per_worker: int, modules: Sequence[str]) -> ForkServer:
    """Record the fork server an entry point started (the first record stays: one server per process)."""
    global _server
    with _lock:
        if _server is None:
            _server = ForkServer(threads_per_worker, tuple(modules))
        return _server


def running_fork_server() -> ForkServer | None:
    """The fork server this process started, if any."""
    return _server


def start_method(threads_per_worker: int) -> str:
    """The multiprocessing start method for a LocalCluster's workers: ``forkserver`` when a server
    with their environment runs, else ``spawn``."""
    server = _server
    if server is not None and server.threads_per_worker == threads_per_worker:
        return "forkserver"
    if server is not None:
        log.debug("fork server runs with %s BLAS thread(s), not %d: spawning the workers",
                  server.threads_per_worker, threads_per_worker)
    return "spawn"
