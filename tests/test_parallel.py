"""Dask task sizing and the settings of the LocalCluster workers medseg starts."""

from __future__ import annotations

import os

import pytest

from medseg.config import DaskConfig
from medseg.parallel import dask_client, task_size, worker_threads


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


def _malloc_env() -> dict[str, str | None]:
    return {k: os.environ.get(k) for k in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")}


def test_local_workers_keep_an_adaptive_heap() -> None:
    with dask_client(DaskConfig(n_workers=1, threads_per_worker=1, memory_limit="1GiB")) as client:
        envs = list(client.run(_malloc_env).values())
        assert worker_threads(client) == 1
    # Dask's default MALLOC_TRIM_THRESHOLD_=65536 made every array > 128 KiB a fresh mmap
    assert envs == [{"MALLOC_MMAP_THRESHOLD_": str(32 << 20), "MALLOC_TRIM_THRESHOLD_": str(64 << 20)}]
    assert worker_threads(None) == 1


def _blas_env() -> str | None:
    return os.environ.get("OMP_NUM_THREADS")


@pytest.mark.parametrize("background", [False, True])
def test_local_workers_get_one_blas_thread_per_dask_thread_and_the_caller_keeps_its_own(
    monkeypatch: pytest.MonkeyPatch, background: bool
) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "7")
    cfg = DaskConfig(n_workers=1, threads_per_worker=2, memory_limit="1GiB")
    with dask_client(cfg, workers_in_background=background) as client:
        assert worker_threads(client) == 2  # in the background case: waits for the worker to start
        assert list(client.run(_blas_env).values()) == ["2"]
    assert os.environ["OMP_NUM_THREADS"] == "7"


def _profiling() -> bool:
    import dask

    return bool(dask.config.get("distributed.worker.profile.enabled"))


@pytest.mark.parametrize("profile", [False, True])
def test_local_workers_run_the_dask_profiler_only_when_asked(profile: bool) -> None:
    cfg = DaskConfig(n_workers=1, threads_per_worker=1, memory_limit="1GiB", worker_profile=profile)
    with dask_client(cfg) as client:
        assert list(client.run(_profiling).values()) == [profile]
