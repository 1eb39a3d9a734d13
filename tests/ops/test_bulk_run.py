"""medseg.ops.bulk_run: the bulk flow's batching and cluster lifecycle, without Prefect."""

from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor

import pytest

import medseg.ops.bulk_run as bulk_run
import medseg.runtime.cluster as cluster
from medseg.config import DaskConfig
from medseg.ops.bulk import BatchRecord, BulkManifest, BulkTotals
from medseg.ops.bulk_run import bulk_result, bulk_table_row, cluster_address, pending_batches, run_batches


def test_completed_batches_are_skipped() -> None:
    assert pending_batches(5, {0, 3}) == [1, 2, 4]
    assert pending_batches(3, set()) == [0, 1, 2]
    assert pending_batches(2, {0, 1}) == []


@pytest.mark.parametrize("window", [1, 2, 3])
def test_the_window_bounds_the_batches_in_flight_and_results_keep_their_order(window: int) -> None:
    lock = threading.Lock()
    running = peak = 0
    progress: list[int] = []

    def work(batch: int) -> int:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        try:
            threading.Event().wait(0.01 * (5 - batch % 5))  # later batches finish sooner
            return batch * 10
        finally:
            with lock:
                running -= 1

    with ThreadPoolExecutor(max_workers=8) as pool:
        submitted: list[int] = []

        def submit(batch: int) -> Future[int]:
            submitted.append(batch)
            return pool.submit(work, batch)

        results = run_batches([1, 2, 4, 5, 6, 7], submit, window, progress.append, done_before=2)
    assert results == [10, 20, 40, 50, 60, 70]
    assert submitted == [1, 2, 4, 5, 6, 7]
    assert peak <= window and (window == 1 or peak > 1)
    assert progress == [3, 4, 5, 6, 7, 8]  # done before + finished here, after each result


def test_a_zero_window_still_runs_one_batch_at_a_time() -> None:
    done: list[int] = []

    def submit(batch: int) -> Future[int]:
        fut: Future[int] = Future()
        fut.set_result(batch)
        done.append(batch)
        return fut

    assert run_batches(range(3), submit, 0) == [0, 1, 2] and done == [0, 1, 2]


def test_a_configured_cluster_is_handed_out_and_its_shared_client_closed(monkeypatch: pytest.MonkeyPatch) -> None:
    closed: list[str | None] = []
    monkeypatch.setattr(bulk_run, "close_shared_client", closed.append)
    with cluster_address(DaskConfig(address="tcp://scheduler:8786")) as address:
        assert address == "tcp://scheduler:8786" and closed == []
    assert closed == ["tcp://scheduler:8786"]


def test_a_local_cluster_lives_for_the_block_and_shared_clients_of_it_are_closed() -> None:
    cfg = DaskConfig(n_workers=1, threads_per_worker=1, memory_limit="1GiB")
    with cluster_address(cfg) as address:
        assert address is not None and address.startswith("tcp://")
        client = cluster.shared_client(address)
        assert cluster.shared_client(address) is client  # one client per address in a process
        assert client.submit(sum, [1, 2, 3]).result() == 6
    assert client.status == "closed"
    assert address not in cluster._CLIENTS


def _record(batch: int, indexed: int, read_s: float) -> BatchRecord:
    return BatchRecord(manifest="m", batch=batch, first_file=batch * 10, files=10, indexed=indexed, already_indexed=0,
                       quarantined=1, read_seconds=read_s, commit_seconds=0.5, lookup_seconds=0.25, work_seconds=2.0,
                       read_cpu_seconds=read_s, workers=batch + 1, run_id="r", host="h", pid=1, started_at=0.0,
                       finished_at=1.0)


def test_the_run_result_and_table_sum_the_batches_run_and_name_the_skipped() -> None:
    manifest = BulkManifest(key="m", sources=["/a"], n_files=40, files_per_task=10, n_batches=4,
                            offsets=[0, 1, 2, 3], created_at=0.0, scan_seconds=1.5)
    records = [_record(1, 9, 1.0), _record(3, 7, 2.0)]
    result = bulk_result("r", manifest, records, {0, 2}, {"series_ingested": 5, "cases": 4}, 12.3456, {"scan": 1.23456})
    assert result["batches_run"] == [1, 3] and result["batches_skipped"] == [0, 2]
    assert result["read_seconds"] == 3.0 and result["commit_seconds"] == 1.0 and result["work_seconds"] == 4.0
    assert result["cpu_seconds"] == {"read": 3.0, "commit": 0.0, "lookup": 0.0}
    assert result["workers"] == 4 and result["files_indexed"] == 16
    assert result["wall_seconds"] == 12.346 and result["timings"] == {"scan": 1.235}
    row = bulk_table_row(result, BulkTotals(batches_total=4, quarantined=6))
    assert row["batches_run"] == 2 and row["batches_skipped"] == 2 and row["files indexed"] == 16
    assert row["quarantined"] == 6 and row["wall_s"] == 12.35 and row["cases"] == 4 and row["series ingested"] == 5
    assert "cases" not in bulk_table_row(bulk_result("r", manifest, [], set(), None, 1.0, {}), BulkTotals())
