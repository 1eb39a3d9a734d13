"""Preprocessing on a real ``dask scheduler`` + ``dask worker`` processes (127.0.0.1).

* the same workspace preprocessed on that cluster (``dask.address``) and on a LocalCluster gives
  identical stores;
* SIGKILL of a worker mid-run: every case still completes (Dask reschedules the killed worker's
  tasks), no half-written store is visible, and the stores equal those of an undisturbed run.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import signal
from pathlib import Path

import pytest
from dask_processes import process_cluster
from distributed import Client, get_task_stream
from preprocess_synthetic import synthetic_case
from store_compare import assert_same_cases, assert_same_store

from medseg.config import MedsegConfig
from medseg.io.volume_store import is_complete, write_case
from medseg.preprocess.run import run_preprocess
from medseg.runtime.cluster import dask_client
from medseg.workspace import Workspace


def _cfg(root: Path, address: str | None = None) -> MedsegConfig:
    c = MedsegConfig(workspace=root)
    c.preprocess.max_patch_voxels = 16 * 32 * 32
    c.train.filters = [8, 16, 32, 64]
    c.dask.address = address
    c.dask.n_workers = 2
    c.dask.memory_limit = "2GiB"
    return c


def _populate(ws: Workspace, n: int, shape: tuple[int, int, int]) -> None:
    for i in range(n):
        spacing = (2.0 + 0.25 * (i % 3), 0.8 + 0.05 * (i % 4), 0.8 + 0.05 * (i % 4))
        case = synthetic_case(f"c{i:02d}", shape=shape, spacing=spacing, modality="CT", seed=i)
        write_case(ws.volume_path(f"c{i:02d}"), case)


def _copy_volumes(src: Workspace, root: Path) -> Workspace:
    ws = Workspace.at(root).ensure()
    shutil.copytree(src.volumes_dir, ws.volumes_dir, dirs_exist_ok=True)
    return ws


def _assert_same_workspace(a: Workspace, b: Workspace) -> None:
    assert a.plan_path.read_text() == b.plan_path.read_text()
    assert a.fingerprint_path.read_text() == b.fingerprint_path.read_text()
    assert a.splits_path.read_text() == b.splits_path.read_text()
    assert assert_same_cases(a.preprocessed_case_path("x").parent, b.preprocessed_case_path("x").parent)


def test_scheduler_address_and_local_cluster_give_identical_stores(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="medseg")
    base = Workspace.at(tmp_path / "base").ensure()
    _populate(base, 4, (20, 48, 48))
    local = _copy_volumes(base, tmp_path / "local")
    remote = _copy_volumes(base, tmp_path / "remote")
    with dask_client(_cfg(local.root).dask) as client:
        s_local = run_preprocess(local, _cfg(local.root), client)
    assert re.search(r"started LocalCluster with 2 workers \(dashboard: http://\S+\)", caplog.text)
    progress: list[tuple[int, int]] = []
    with process_cluster(tmp_path / "cluster") as cluster:
        cfg = _cfg(remote.root, cluster.address)
        with dask_client(cfg.dask) as client:
            assert client.scheduler is not None and client.scheduler.address == cluster.address
            assert len(client.scheduler_info()["workers"]) == 2
            with get_task_stream(client) as stream:
                s_remote = run_preprocess(remote, cfg, client, progress=lambda d, t: progress.append((d, t)))
    # the work ran in both worker processes (the test process only submitted tasks)
    assert len({t["worker"] for t in stream.data}) == 2
    assert f"connected to Dask scheduler {cluster.address} (dashboard: " in caplog.text
    # progress: once before any case, then once per completed case
    assert progress == [(i, 4) for i in range(5)]
    done_lines = [r.getMessage() for r in caplog.records if "] preprocessed c" in r.getMessage()]
    assert len(done_lines) == 8 and done_lines[-1].startswith("[4/4] preprocessed c")  # local + remote
    for s in (s_local, s_remote):
        assert (s.cases_processed, s.failed) == (4, [])
    assert s_local.plan_hash == s_remote.plan_hash
    _assert_same_workspace(local, remote)


@pytest.mark.slow
def test_killed_worker_mid_run_loses_no_case(tmp_path: Path) -> None:
    base = Workspace.at(tmp_path / "base").ensure()
    _populate(base, 10, (40, 160, 160))
    ref = _copy_volumes(base, tmp_path / "ref")
    hit = _copy_volumes(base, tmp_path / "hit")
    cases_dir = hit.preprocessed_case_path("x").parent
    stale = cases_dir / ".c03.zarr.partial-deadbeef"  # left by a worker killed in an earlier run
    (stale / "0").mkdir(parents=True)

    with process_cluster(tmp_path / "cluster") as cluster, Client(cluster.address, timeout="30s") as client:
        s_ref = run_preprocess(ref, _cfg(ref.root, cluster.address), client)
        assert (s_ref.cases_processed, s_ref.failed) == (10, [])

        killed: dict[str, object] = {}

        def kill_one_busy_worker(done: int, total: int) -> None:
            if killed or done < 1 or done >= total:
                return
            busy = {addr for addr, keys in client.processing().items() if keys}
            for proc in cluster.workers:
                addr = cluster.worker_address(client, proc)
                if addr in busy:
                    os.kill(proc.pid, signal.SIGKILL)
                    killed.update(addr=addr, done=done, tasks=len(client.processing()[addr]))
                    return

        s_hit = run_preprocess(hit, _cfg(hit.root, cluster.address), client, progress=kill_one_busy_worker)
        assert killed, "no worker was busy after the first completed case: the kill did not land mid-run"
        assert 1 <= int(killed["done"]) < 10 and int(killed["tasks"]) >= 1  # type: ignore[call-overload]
        assert sum(p.poll() is not None for p in cluster.workers) == 1  # one worker is really dead
        assert len(client.scheduler_info()["workers"]) == 1

    assert (s_hit.cases_total, s_hit.cases_processed, s_hit.failed) == (10, 10, [])
    assert not stale.exists()
    assert not [p.name for p in cases_dir.iterdir() if p.name.startswith(".")]  # no partial store left
    assert all(is_complete(hit.preprocessed_case_path(f"c{i:02d}")) for i in range(10))
    _assert_same_workspace(ref, hit)
    assert_same_store(ref.preprocessed_case_path("c00"), hit.preprocessed_case_path("c00"))
