"""Bulk indexing library: manifest, batch slices, records, resume, and the catalog of a plain ingest."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from catalog_snapshot import catalog_snapshot

from medseg.config import IngestConfig
from medseg.ingest.file_index import scan_sources
from medseg.ingest.run import ingest
from medseg.ops import bulk
from medseg.ops.bulk import completed_batches, index_batch, read_batch, totals, write_manifest
from medseg.workspace import Workspace

KEY = "bulk-secret-123"
CFG = IngestConfig(deid_secret=KEY, files_per_batch=8)


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from medseg.demo.archive import generate_demo_archive

    out = tmp_path_factory.mktemp("bulk") / "archive"
    generate_demo_archive(out, cases=3, seed=5)
    return out


def test_manifest_is_streamed_split_and_stable(archive: Path, tmp_path: Path) -> None:
    ws = Workspace.at(tmp_path / "ws").ensure()
    m = write_manifest([archive], ws, files_per_task=10)
    files = list(scan_sources([archive]))
    assert m.n_files == len(files) and m.n_batches == -(-len(files) // 10) == len(m.offsets)
    assert [it for b in range(m.n_batches) for it in read_batch(ws, m, b)] == files
    assert len(read_batch(ws, m, m.n_batches - 1)) == len(files) - 10 * (m.n_batches - 1)
    assert write_manifest([archive], ws, 10).key == m.key  # same files + batch size = same manifest
    assert write_manifest([archive], ws, 11).key != m.key
    assert not [p for p in bulk.bulk_root(ws).iterdir() if p.name.startswith(".")]  # no temp files left
    with pytest.raises(IndexError, match="out of range"):
        read_batch(ws, m, m.n_batches)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        write_manifest([tmp_path / "missing"], ws, 10)


def test_batches_then_ingest_give_the_catalog_of_a_plain_ingest(archive: Path, tmp_path: Path) -> None:
    ref = Workspace.at(tmp_path / "ref")
    ingest([archive], ref, CFG)
    ws = Workspace.at(tmp_path / "ws").ensure()
    m = write_manifest([archive], ws, files_per_task=25)
    records = [index_batch(ws, CFG, m, b, None, run_id="bulk-test") for b in range(m.n_batches)]
    assert sum(r.indexed for r in records) == m.n_files and all(r.already_indexed == 0 for r in records)
    assert completed_batches(ws, m) == set(range(m.n_batches))
    # a batch with a record is never processed again: the stored record comes back unchanged
    first = bulk.record_path(ws, m.key, 0)
    before = (first.read_text(), first.stat().st_mtime_ns)
    assert index_batch(ws, CFG, m, 0, None, run_id="other") == records[0]
    assert (first.read_text(), first.stat().st_mtime_ns) == before
    t = totals(ws, m)
    assert (t.batches_done, t.files, t.indexed) == (m.n_batches, m.n_files, m.n_files)
    # CPU clocks of the work (the bench's overhead accounting): header reading and commits cost CPU
    assert t.read_cpu_seconds > 0 and t.commit_cpu_seconds > 0
    assert t.read_cpu_seconds <= t.read_seconds * 1.05 + 0.05
    summary = ingest([archive], ws, CFG)
    assert summary.files_indexed == 0 and summary.cases == 3  # the batches did all header reading
    assert catalog_snapshot(ws) == catalog_snapshot(ref)


def test_interrupted_batch_reads_only_the_missing_files(archive: Path, tmp_path: Path) -> None:
    ws = Workspace.at(tmp_path / "ws").ensure()
    m = write_manifest([archive], ws, files_per_task=40)
    items = read_batch(ws, m, 0)
    from medseg.ingest.headers import read_header_batch
    from medseg.io.catalog import Catalog

    Catalog(ws.catalog_path).upsert_files(read_header_batch(items[:16], KEY), "killed-run")
    rec = index_batch(ws, CFG, m, 0, None)
    assert (rec.indexed, rec.already_indexed, rec.files) == (len(items) - 16, 16, len(items))
    # a changed file (new mtime) is read again by its batch
    os.utime(items[0][0], ns=(items[0][2] + 10**9, items[0][2] + 10**9))
    m2 = write_manifest([archive], ws, files_per_task=40)
    assert m2.key != m.key
    assert index_batch(ws, CFG, m2, 0, None).indexed == 1


def test_an_earlier_batch_goes_first_when_batch_tasks_overlap(
    archive: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading
    import time

    import distributed

    from medseg.ingest.file_index import header_rows

    def slow_header_rows(items: list[tuple[str, int, int]] | bytes, secret: str, run_id: str) -> list[tuple[Any, ...]]:
        time.sleep(0.05)
        return header_rows(items, secret, run_id)

    monkeypatch.setattr(bulk, "header_rows", slow_header_rows)  # workers are threads of this process
    ws = Workspace.at(tmp_path / "ws").ensure()
    m = write_manifest([archive], ws, files_per_task=40)
    cfg = IngestConfig(deid_secret="bulk-secret-123", files_per_batch=4)  # 10 sub-batches per batch
    records: dict[int, bulk.BatchRecord] = {}
    with distributed.Client(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None) as client:
        later = threading.Thread(target=lambda: records.setdefault(1, index_batch(ws, cfg, m, 1, client)))
        later.start()
        time.sleep(0.15)  # batch 1's sub-batches are queued when batch 0 arrives
        records[0] = index_batch(ws, cfg, m, 0, client)
        later.join()
    assert records[0].indexed == records[1].indexed == 40
    assert records[0].finished_at < records[1].finished_at  # batch 0's sub-batches jumped the queue
