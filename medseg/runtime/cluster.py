"""Dask client for a stage: an existing scheduler by address, or a LocalCluster of processes."""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import logging
import math
import threading
import time
import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import cast

import dask
from distributed import Client, LocalCluster, Scheduler, Worker, WorkerPlugin
from distributed.core import Status

from medseg.config import DaskConfig
from medseg.runtime.cluster_events import ClusterStarted, announce
from medseg.runtime.fork_server import (
    WORKER_MALLOC_ENV,
    blas_environ,
    environ_for_children,
    running_fork_server,
    start_method,
)
from medseg.runtime.gpu_workers import GpuPinnedCluster

log = logging.getLogger(__name__)

_COMM_LOG_LENGTH = 20
# Periodic callbacks of a LocalCluster's scheduler, nannies and workers, at Dask's defaults 20 ms
# (event-loop health), 500 ms (system monitor) and 100 ms (worker memory): 0.08 s of CPU per second
# of an idle 2-worker cluster, taken from the tasks on a small machine. These settings halve that;
# a blocked event loop and memory above the worker's limits are still caught.
_LOCAL_MONITORING = {
    "distributed.admin.tick.interval": "1s",
    "distributed.admin.system-monitor.interval": "2s",
    "distributed.worker.memory.monitor-interval": "500ms",
}


@contextmanager
def _quiet_distributed(level: int = logging.WARNING) -> Iterator[None]:
    """Keep Dask's per-worker INFO chatter out of run logs while a stage's cluster is up."""
    logger = logging.getLogger("distributed")
    previous = logger.level
    logger.setLevel(level)
    try:
        yield
    finally:
        logger.setLevel(previous)


class ImportModules(WorkerPlugin):
    """Import ``modules`` on every worker before it takes a task (pydicom: 0.25 s).

    A plugin (not one warm-up task per worker) reaches each worker, including those still starting:
    tasks submitted before the workers exist all go to the first one that registers.
    """

    name = "medseg-worker-imports"

    def __init__(self, modules: Sequence[str]) -> None:
        self.modules = tuple(modules)

    def setup(self, worker: Worker) -> None:
        for module in self.modules:
            importlib.import_module(module)


def _preloaded(cfg: DaskConfig, preload: Sequence[str]) -> bool:
    """Local workers forked from a fork server that imported every module of ``preload``."""
    server = running_fork_server()
    return (not cfg.address and server is not None and start_method(cfg.threads_per_worker) == "forkserver"
            and set(preload) <= set(server.modules))


@contextmanager
def dask_client(cfg: DaskConfig, *, preload: Sequence[str] = (), workers_in_background: bool = False,
                gpus: Sequence[str] = (), n_workers: int | None = None) -> Iterator[Client]:
    """Yield a connected client; a LocalCluster is started (and closed) only when no address is set.

    Local workers are processes with one BLAS thread per Dask thread, so N workers never
    oversubscribe the cores. They are forked from the fork server an entry point started when its
    environment fits (see :mod:`medseg.runtime.fork_server`), else spawned.

    Args:
        preload: modules the caller's tasks need: every worker imports them before its first task
            (:class:`ImportModules`), unless it was forked from a server that imported them.
        workers_in_background: yield as soon as the LocalCluster's scheduler runs; its workers
            start meanwhile (~0.5 s), and :func:`worker_threads` waits for them (raising a clear
            error if they do not come up). For callers that call :func:`worker_threads` before
            they submit work, e.g. :func:`medseg.ingest.run.ingest`, which scans the sources
            meanwhile. Otherwise the LocalCluster is up, or has failed, when the client is yielded.
        gpus: a LocalCluster of one worker per entry, each pinned to that GPU (its
            ``CUDA_VISIBLE_DEVICES``) and advertising the resource ``GPU=1``
            (:class:`~medseg.runtime.gpu_workers.GpuPinnedCluster`); ``cfg.n_workers`` is then unused.
        n_workers: LocalCluster workers instead of ``cfg.n_workers`` (e.g. no more than the cases).
    """
    # Dask keeps the last `low-level-log-length` messages of every comm (default 1000), task
    # arguments included: ~20 MB per worker for ingest jobs, in the process running the local
    # scheduler. A short log keeps that process's memory flat whatever the archive size.
    settings: dict[str, object] = {"distributed.admin.low-level-log-length": _COMM_LOG_LENGTH}
    # Local workers get this process's Dask config. The statistical profiler walks the running
    # task's stack every 10 ms: ~5 % of the time of medseg's Python-heavy tasks (header reading).
    settings["distributed.worker.profile.enabled"] = cfg.worker_profile
    settings.update({f"distributed.nanny.pre-spawn-environ.{k}": v for k, v in WORKER_MALLOC_ENV.items()})
    with _quiet_distributed(), dask.config.set(settings):
        if n_workers is not None:
            cfg = cfg.model_copy(update={"n_workers": n_workers})
        with _client(cfg, workers_in_background, tuple(gpus)) as client:
            if preload and not _preloaded(cfg, preload):
                client.register_plugin(ImportModules(preload))
            yield client


@contextmanager
def _client(cfg: DaskConfig, workers_in_background: bool, gpus: tuple[str, ...] = ()) -> Iterator[Client]:
    if cfg.address:
        client = Client(cfg.address, timeout="30s")
        announce(ClusterStarted(cfg.address, _dashboard(client), local=False,
                                n_workers=len(client.scheduler_info().get("workers", {}))))
        try:
            yield client
        finally:
            client.close()
        return
    # One BLAS thread per Dask thread, inherited by every worker spawned while the cluster is up (the
    # Nanny lets this process's environment override its pre-spawn config); restored when it closes.
    # Forked workers have it from the fork server's environment.
    local = {**_LOCAL_MONITORING, "distributed.worker.multiprocessing-method": start_method(cfg.threads_per_worker)}
    # both read while workers start (in the background too)
    # A spawned worker imports numpy while it unpickles its bootstrap data, before the Nanny's
    # ``environ`` reaches it, and the Nanny's ``pre-spawn-environ`` gives way to this process's own
    # variables: a spawned worker's BLAS threads can only be set in the environment it is spawned from.
    with environ_for_children(blas_environ(cfg.threads_per_worker)), dask.config.set(local):
        if gpus:
            with _gpu_cluster(cfg, gpus) as client:
                yield client
            return
        cluster = LocalCluster(
            n_workers=0 if workers_in_background else cfg.n_workers,
            threads_per_worker=cfg.threads_per_worker,
            processes=True,
            memory_limit=cfg.memory_limit,
            dashboard_address=cfg.dashboard_address,
            silence_logs=logging.WARNING,
        )
        if workers_in_background:
            cluster.scale(cfg.n_workers)
            client = Client(cluster.scheduler_address)  # Client(cluster) would wait for the workers
            _STARTING[client] = _Starting(cfg.n_workers, cast(Scheduler, cluster.scheduler))
        else:
            client = Client(cluster)
        announce(ClusterStarted(str(cluster.scheduler_address), _dashboard(client, _serves_dashboard(cfg)), local=True,
                                n_workers=cfg.n_workers))
        try:
            yield client
        finally:
            client.close()
            cluster.close()


def _serves_dashboard(cfg: DaskConfig) -> bool:
    """Whether a LocalCluster started with ``cfg`` serves the dashboard (an address, and bokeh installed)."""
    return cfg.dashboard_address is not None and importlib.util.find_spec("bokeh") is not None


def _dashboard(client: Client, served: bool = True) -> str | None:
    """The dashboard's status page of ``client``'s scheduler; None when ``served`` is False (a LocalCluster
    started without one) or the link cannot be read. The scheduler's HTTP server also runs without a dashboard
    (``/health``, ``/metrics``), so its presence says nothing."""
    if not served:
        return None
    try:
        return str(client.dashboard_link)
    except Exception:  # noqa: BLE001 - a link for humans; never fail the stage over it
        return None


@contextmanager
def _gpu_cluster(cfg: DaskConfig, gpus: tuple[str, ...]) -> Iterator[Client]:
    """A LocalCluster of one worker per GPU of ``gpus`` (each sees only its own), up when yielded."""
    cluster = GpuPinnedCluster(
        gpus,
        threads_per_worker=cfg.threads_per_worker,
        processes=True,
        memory_limit=cfg.memory_limit,
        dashboard_address=cfg.dashboard_address,
        silence_logs=logging.WARNING,
    )
    client = Client(cluster)
    try:
        client.wait_for_workers(len(gpus), timeout=WORKER_START_TIMEOUT_S)
        log.info("one LocalCluster worker per GPU: %s", ", ".join(gpus))
        announce(ClusterStarted(str(cluster.scheduler_address), _dashboard(client, _serves_dashboard(cfg)), local=True,
                                n_workers=len(gpus)))
        yield client
    finally:
        client.close()
        cluster.close()


#: How long :func:`worker_threads` waits for the workers of a LocalCluster that is still starting.
WORKER_START_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class _Starting:
    """A LocalCluster :func:`dask_client` started with its workers in the background."""

    n_workers: int  # requested
    scheduler: Scheduler  # runs on the client's event loop, in this process


#: Clients of the LocalClusters :func:`dask_client` started in the background -> that cluster.
_STARTING: weakref.WeakKeyDictionary[Client, _Starting] = weakref.WeakKeyDictionary()
#: How often :func:`worker_threads` looks for a starting LocalCluster's workers. Dask's
#: ``wait_for_workers`` looks every 100 ms: on average 50 ms more before a run's first tasks go out.
_WORKER_POLL_S = 0.005


def expected_workers(client: Client) -> int:
    """Workers ``client``'s cluster has or is starting (a LocalCluster's requested count; else those connected)."""
    starting = _STARTING.get(client)
    return starting.n_workers if starting is not None else len(client.scheduler_info().get("workers", {}))


def worker_threads(client: Client | None) -> int:
    """Worker threads of ``client``'s cluster (1 without a client); waits for a starting LocalCluster's workers."""
    if client is None:
        return 1
    expected = expected_workers(client)
    starting = _STARTING.get(client)
    if starting is not None:
        running, threads = client.sync(_until_running, starting.scheduler, expected, WORKER_START_TIMEOUT_S)
    else:
        try:
            client.wait_for_workers(expected, timeout=WORKER_START_TIMEOUT_S)
        except TimeoutError:
            running, threads = len(client.scheduler_info().get("workers", {})), 0
        else:
            info = client.scheduler_info().get("workers", {})
            running, threads = len(info), sum(int(w.get("nthreads", 1)) for w in info.values())
    if running < expected:
        raise RuntimeError(
            f"only {running} of {expected} Dask workers started within "
            f"{WORKER_START_TIMEOUT_S:.0f} s (see the worker errors above; check dask.memory_limit and free memory)"
        )
    return max(1, threads)


async def _until_running(scheduler: Scheduler, n_workers: int, timeout: float) -> tuple[int, int]:
    """``(running workers, their threads)`` of the local ``scheduler`` once ``n_workers`` run, or at
    ``timeout``; read on its event loop, never from another thread."""
    deadline = time.monotonic() + timeout
    while True:
        running = [ws for ws in scheduler.workers.values() if ws.status == Status.running]
        if len(running) >= n_workers or time.monotonic() > deadline:
            return len(running), sum(ws.nthreads for ws in running)
        await asyncio.sleep(_WORKER_POLL_S)


def task_size(total: int, per_task: int, threads: int, tasks_per_thread: int = 4) -> int:
    """Items per Dask task: at most ``per_task`` (amortises ~10-20 ms of scheduling and transfer per
    task), but small enough to give every worker thread ``tasks_per_thread`` tasks (load balance)."""
    return max(1, min(per_task, math.ceil(total / (tasks_per_thread * max(1, threads)))))


@dataclass(frozen=True)
class TaskSizer:
    """Items per Dask task as a run goes (guided self-scheduling).

    ``per_task`` items per task (see :func:`task_size`) while plenty are left, then fewer, so that
    the worker threads run out of work at about the same time: the next task gets at most the
    remaining items divided by twice the threads, and at least ``per_task // 8``. With equal
    tasks to the end, one thread may still run a last full task (~0.25 s of building 1,024 files)
    while the others idle: on the bench archive the two workers' last build tasks ended 25-124 ms
    apart (3 runs), 5-36 ms apart with these sizes (6 runs).
    """

    total: int
    per_task: int
    threads: int = 1

    @classmethod
    def for_run(cls, total: int, per_task: int, threads: int) -> TaskSizer:
        """Tasks of at most ``per_task`` items, at least 4 per worker thread, shrinking towards the end."""
        return cls(total, task_size(total, per_task, threads), max(1, threads))

    def __call__(self, done: int) -> int:
        """Items for the next task, once ``done`` items went into earlier tasks."""
        floor = max(1, self.per_task // 8)
        return max(floor, min(self.per_task, math.ceil((self.total - done) / (2 * self.threads))))


_CLIENTS: dict[str, Client] = {}
_CLIENTS_LOCK = threading.Lock()


def shared_client(address: str) -> Client:
    """One client per scheduler address for every batch task of this process (connecting costs ~0.2 s).

    A client whose connection was lost is replaced; clients are closed when the process exits.
    """
    with _CLIENTS_LOCK:
        client = _CLIENTS.get(address)
        if client is None or client.status not in ("running", "connecting"):
            client = Client(address, timeout="30s", set_as_default=False)
            _CLIENTS[address] = client
        return client


def close_shared_client(address: str | None) -> None:
    """Close this process's shared client of ``address`` (e.g. at the end of a bulk run)."""
    with _CLIENTS_LOCK:
        client = _CLIENTS.pop(address, None) if address else None
    if client is not None:
        client.close()
