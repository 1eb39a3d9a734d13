"""Dask task sizing and the settings of the LocalCluster workers medseg starts."""

from __future__ import annotations

import dataclasses
import os
import sys

import pytest

import medseg.runtime.cluster as parallel
from medseg.cli.fork_server import start_fork_server
from medseg.config import DaskConfig
from medseg.ingest.workers import INGEST_WORKER_MODULES
from medseg.runtime.cluster import TaskSizer, dask_client, task_size, worker_threads
from medseg.runtime.fork_server import fork_server_available


@pytest.mark.parametrize(
    ("total", "per_task", "threads", "expected"),
    [
        (100_000, 1024, 2, 1024),  # big archive: the configured size
        (2_000, 1024, 2, 250),  # small archive: 4 tasks per worker thread
        (3, 1024, 2, 1),
        (0, 1024, 2, 1),
        (10_000, 256, 8, 256),
    ],
)
def test_task_size_caps_and_balances(total: int, per_task: int, threads: int, expected: int) -> None:
    assert task_size(total, per_task, threads) == expected


def test_task_sizes_shrink_towards_the_end_of_a_run() -> None:
    """Full-size tasks while plenty is left, then smaller ones (each thread ends at about the same time)."""
    sizer = TaskSizer.for_run(20_665, 1024, 2)
    sizes, done = [], 0
    while done < 20_665:
        sizes.append(min(sizer(done), 20_665 - done))
        done += sizes[-1]
    assert sizes[0] == 1024 and sizes.count(1024) >= 16
    assert sizes == sorted(sizes, reverse=True)  # never growing again
    assert max(sizes[-4:]) <= 1024 // 8  # the last tasks hold an eighth of a full one
    assert min(sizes[:-1]) == 1024 // 8  # ... but not less (per-task costs); the last takes the rest
    small = TaskSizer.for_run(40, 1024, 2)  # a small run: 4 tasks per thread first (task_size)
    assert small(0) == 5 and small(38) == 1


def _malloc_env() -> dict[str, str | None]:
    return {k: os.environ.get(k) for k in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")}


def test_local_workers_keep_an_adaptive_heap() -> None:
    with dask_client(DaskConfig(n_workers=1, threads_per_worker=1, memory_limit="1GiB")) as client:
        envs = list(client.run(_malloc_env).values())
        assert worker_threads(client) == 1
    # Dask's default MALLOC_TRIM_THRESHOLD_=65536 made every array > 128 KiB a fresh mmap
    assert envs == [{"MALLOC_MMAP_THRESHOLD_": str(32 << 20), "MALLOC_TRIM_THRESHOLD_": str(64 << 20)}]
    assert worker_threads(None) == 1


def _origin() -> tuple[int, list[str]]:
    """The worker's parent process and which ingest modules it had before running anything."""
    return os.getppid(), [m for m in INGEST_WORKER_MODULES if m in sys.modules]


def _blas_env() -> str | None:
    return os.environ.get("OMP_NUM_THREADS")


@pytest.mark.parametrize("background", [False, True])
def test_local_workers_get_one_blas_thread_per_dask_thread_and_the_caller_keeps_its_own(
    monkeypatch: pytest.MonkeyPatch, background: bool
) -> None:
    """2-thread workers: not the fork server's environment (1 BLAS thread), so they are spawned with their own."""
    monkeypatch.setenv("OMP_NUM_THREADS", "7")
    assert not start_fork_server(2)
    cfg = DaskConfig(n_workers=1, threads_per_worker=2, memory_limit="1GiB")
    with dask_client(cfg, workers_in_background=background) as client:
        assert worker_threads(client) == 2  # in the background case: waits for the worker to start
        assert list(client.run(_blas_env).values()) == ["2"]
        [(parent, _)] = client.run(_origin).values()
    assert parent == os.getpid()  # spawned by this process's Nanny
    assert os.environ["OMP_NUM_THREADS"] == "7"


def _profiling() -> bool:
    import dask

    return bool(dask.config.get("distributed.worker.profile.enabled"))


@pytest.mark.parametrize("profile", [False, True])
def test_local_workers_run_the_dask_profiler_only_when_asked(profile: bool) -> None:
    cfg = DaskConfig(n_workers=1, threads_per_worker=1, memory_limit="1GiB", worker_profile=profile)
    with dask_client(cfg) as client:
        assert list(client.run(_profiling).values()) == [profile]


@pytest.mark.skipif(not fork_server_available(), reason="no forkserver start method on this platform")
def test_single_threaded_local_workers_are_forked_from_the_preloaded_server() -> None:
    assert start_fork_server(1)  # conftest started it first, as the CLI does: nothing new here
    with dask_client(DaskConfig(n_workers=2, threads_per_worker=1, memory_limit="1GiB")) as client:
        origins = list(client.run(_origin).values())
    parents = {parent for parent, _ in origins}
    assert len(origins) == 2 and len(parents) == 1
    assert parents != {os.getpid()}  # not spawned by this process: forked by the server
    assert all(mods == list(INGEST_WORKER_MODULES) for _, mods in origins)  # imported once, in the server


def test_a_local_cluster_whose_workers_do_not_start_gives_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """worker_threads watches the local scheduler itself (every 5 ms, not Dask's 100 ms), and still
    gives up with a clear error when the workers never come up."""
    cfg = DaskConfig(n_workers=1, threads_per_worker=2, memory_limit="1GiB")
    with dask_client(cfg, workers_in_background=True) as client:
        assert worker_threads(client) == 2  # the thread count is read from the scheduler, not the client's cache
        monkeypatch.setattr(parallel, "WORKER_START_TIMEOUT_S", 0.3)
        # more workers than the cluster will ever start
        parallel._STARTING[client] = dataclasses.replace(parallel._STARTING[client], n_workers=3)
        with pytest.raises(RuntimeError, match=r"only 1 of 3 Dask workers started within"):
            worker_threads(client)
