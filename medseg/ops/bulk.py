"""Bulk archive indexing in resumable batches (the library half of ``flows/bulk.py``).

Layout under ``<workspace>/bulk/<key>/`` (``key`` = hash of the file list and the batch size)::

    files.jsonl        one ``[path, size, mtime_ns]`` JSON array per line (sorted scan order)
    manifest.json      :class:`BulkManifest`: counts, batch size, byte offset of every batch
    batch-<n>.json     :class:`BatchRecord` of each completed batch (written once, atomically)

The flow passes only the manifest key and batch numbers between tasks (never the file list). A
batch task reads its slice of ``files.jsonl`` (``files_per_task`` lines from a byte offset), asks
the catalog which of those files are not indexed yet (a bounded ``WHERE path IN`` lookup, not the
whole catalog), reads their headers on Dask in sub-batches of up to ``cfg.ingest.files_per_batch``
and commits each sub-batch to the catalog as it completes. Memory is bounded by the batch size,
whatever the archive size. A rerun skips batches that have a record; inside an interrupted batch
the committed files are skipped by the catalog lookup, so no header is read twice.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import distributed
from pydantic import BaseModel, Field

from medseg.config import IngestConfig
from medseg.deid_key import resolve_deid_key
from medseg.ingest.file_index import header_rows, scan_sources
from medseg.io.catalog import FILE_COLUMNS, Catalog
from medseg.io.json_file import write_text_atomic
from medseg.runtime.cluster import task_size, worker_threads
from medseg.workspace import Workspace

FILES_NAME = "files.jsonl"
MANIFEST_NAME = "manifest.json"

FileItem = tuple[str, int, int]


class BulkManifest(BaseModel):
    """A scanned file list split into batches of ``files_per_task`` files."""

    key: str = Field(description="hash of the file list and the batch size (folder name under WS/bulk)")
    sources: list[str]
    n_files: int
    files_per_task: int
    n_batches: int
    offsets: list[int] = Field(description="byte offset in files.jsonl of the first line of each batch")
    created_at: float
    scan_seconds: float

    def folder(self, ws: Workspace) -> Path:
        return bulk_root(ws) / self.key


class BatchRecord(BaseModel):
    """What one completed batch did (``WS/bulk/<key>/batch-<n>.json``)."""

    manifest: str
    batch: int
    first_file: int = Field(description="index of the batch's first file in the manifest")
    files: int = Field(description="files in the batch")
    indexed: int = Field(description="headers read and committed by this batch")
    already_indexed: int = Field(description="files the catalog already had with the same size and mtime")
    quarantined: int = Field(description="files whose header could not be used (reason in the catalog)")
    read_seconds: float = Field(description="sum over Dask tasks of header-reading time (worker CPU side)")
    commit_seconds: float = Field(description="time spent committing rows to the catalog")
    lookup_seconds: float = Field(description="time spent asking the catalog which files are new")
    work_seconds: float = Field(description="wall time of the whole batch inside medseg (lookup+read+commit)")
    read_cpu_seconds: float = Field(0.0, description="CPU time of the header reading (worker threads)")
    commit_cpu_seconds: float = Field(0.0, description="CPU time of the commits (task thread)")
    lookup_cpu_seconds: float = Field(0.0, description="CPU time of the catalog lookups (task thread)")
    workers: int = Field(description="Dask worker threads available to the batch (1 without a cluster)")
    run_id: str
    host: str
    pid: int
    started_at: float
    finished_at: float


def bulk_root(ws: Workspace) -> Path:
    return ws.root / "bulk"


def record_path(ws: Workspace, key: str, batch: int) -> Path:
    return bulk_root(ws) / key / f"batch-{batch:06d}.json"


def write_manifest(sources: list[Path], ws: Workspace, files_per_task: int) -> BulkManifest:
    """Scan ``sources`` into ``WS/bulk/<key>/files.jsonl`` + ``manifest.json`` (streamed: O(1) memory per file).

    The same files (path, size, mtime) and batch size give the same key, so a rerun after a crash
    finds the batch records of the interrupted run.

    Raises:
        FileNotFoundError: a source folder does not exist.
        ValueError: ``files_per_task`` < 1.
    """
    if files_per_task < 1:
        raise ValueError(f"files_per_task must be >= 1, got {files_per_task} (set ops.bulk_files_per_task)")
    t0 = time.time()
    root = bulk_root(ws)
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f".scan-{uuid.uuid4().hex[:8]}.jsonl"
    digest = hashlib.sha256(f"files_per_task={files_per_task}\n".encode())
    offsets: list[int] = []
    n = 0
    pos = 0
    try:
        with open(tmp, "wb") as fh:
            for item in scan_sources(sources):
                if n % files_per_task == 0:
                    offsets.append(pos)
                line = (json.dumps(list(item)) + "\n").encode()
                fh.write(line)
                digest.update(line)
                pos += len(line)
                n += 1
        key = digest.hexdigest()[:16]
        folder = root / key
        existing = folder / MANIFEST_NAME
        if existing.is_file() and (folder / FILES_NAME).is_file():
            return BulkManifest.model_validate_json(existing.read_text())
        folder.mkdir(exist_ok=True)
        os.replace(tmp, folder / FILES_NAME)
    finally:
        if tmp.exists():
            tmp.unlink()
    manifest = BulkManifest(
        key=key,
        sources=[str(Path(s).expanduser().resolve()) for s in sources],
        n_files=n,
        files_per_task=files_per_task,
        n_batches=len(offsets),
        offsets=offsets,
        created_at=time.time(),
        scan_seconds=round(time.time() - t0, 3),
    )
    write_text_atomic(folder / MANIFEST_NAME, manifest.model_dump_json(indent=1))
    return manifest


def load_manifest(ws: Workspace, key: str) -> BulkManifest:
    path = bulk_root(ws) / key / MANIFEST_NAME
    if not path.is_file():
        raise FileNotFoundError(f"bulk manifest {path} not found: run the bulk flow's scan first")
    return BulkManifest.model_validate_json(path.read_text())


def read_batch(ws: Workspace, manifest: BulkManifest, batch: int) -> list[FileItem]:
    """The ``(path, size, mtime_ns)`` items of batch ``batch`` (reads only that slice of files.jsonl)."""
    if not 0 <= batch < manifest.n_batches:
        raise IndexError(f"batch {batch} out of range: manifest {manifest.key} has {manifest.n_batches} batches")
    count = min(manifest.files_per_task, manifest.n_files - batch * manifest.files_per_task)
    items: list[FileItem] = []
    with open(manifest.folder(ws) / FILES_NAME, "rb") as fh:
        fh.seek(manifest.offsets[batch])
        for _ in range(count):
            path, size, mtime = json.loads(fh.readline())
            items.append((str(path), int(size), int(mtime)))
    return items


def load_record(ws: Workspace, key: str, batch: int) -> BatchRecord | None:
    path = record_path(ws, key, batch)
    if not path.is_file():
        return None
    return BatchRecord.model_validate_json(path.read_text())


def completed_batches(ws: Workspace, manifest: BulkManifest) -> set[int]:
    """Batch numbers that have a record (finished in this or an earlier run)."""
    done: set[int] = set()
    for p in manifest.folder(ws).glob("batch-*.json"):
        try:
            done.add(int(p.stem.split("-", 1)[1]))
        except ValueError:
            continue
    return {b for b in done if 0 <= b < manifest.n_batches}


def iter_records(ws: Workspace, manifest: BulkManifest) -> Iterator[BatchRecord]:
    for b in sorted(completed_batches(ws, manifest)):
        rec = load_record(ws, manifest.key, b)
        if rec is not None:
            yield rec


def unindexed(catalog_path: Path, items: list[FileItem]) -> list[FileItem]:
    """The items the catalog does not hold with the same size and mtime (bounded ``IN`` lookups)."""
    if not catalog_path.is_file():
        return list(items)
    known = Catalog(catalog_path, create=False).lookup_files([p for p, _, _ in items])
    return [it for it in items if known.get(it[0]) != (it[1], it[2])]


_STATUS = FILE_COLUMNS.index("status")


def timed_header_rows(items: list[FileItem] | bytes, secret: str, run_id: str) -> tuple[bytes, int, float, float]:
    """Pickled catalog rows of a sub-batch, its quarantined count, wall and CPU seconds (one Dask task).

    The rows are made on the worker (:func:`~medseg.io.catalog.file_row`) and pickled there as
    one object: the task process only stores them, so its commits keep pace with many workers.
    """
    t0, c0 = time.perf_counter(), time.thread_time()
    rows = header_rows(items, secret, run_id)
    bad = sum(1 for r in rows if r[_STATUS] != "ok")
    blob = pickle.dumps(rows, protocol=pickle.HIGHEST_PROTOCOL)
    return blob, bad, time.perf_counter() - t0, time.thread_time() - c0


def index_batch(
    ws: Workspace,
    cfg: IngestConfig,
    manifest: BulkManifest,
    batch: int,
    client: distributed.Client | None = None,
    run_id: str = "bulk",
) -> BatchRecord:
    """Index the files of ``batch`` not yet in the catalog and write the batch record.

    A batch that already has a record is not processed again: its record is returned unchanged.
    Headers are read on Dask (``client``) in sub-batches of up to ``cfg.files_per_batch`` or in this
    process without a client; each sub-batch is committed as it completes.
    """
    existing = load_record(ws, manifest.key, batch)
    if existing is not None:
        return existing
    started = time.time()
    t0, c0 = time.perf_counter(), time.thread_time()
    secret = resolve_deid_key(cfg, ws)
    items = read_batch(ws, manifest, batch)
    todo = unindexed(ws.catalog_path, items)
    lookup_s, lookup_cpu = time.perf_counter() - t0, time.thread_time() - c0
    catalog = Catalog(ws.catalog_path)
    threads = worker_threads(client)
    size = task_size(len(todo), cfg.files_per_batch, threads) if client is not None else cfg.files_per_batch
    subs = [todo[i : i + size] for i in range(0, len(todo), size)]
    read_s = commit_s = read_cpu = commit_cpu = 0.0
    indexed = quarantined = 0

    def _commit(result: tuple[bytes, int, float, float]) -> None:
        nonlocal read_s, commit_s, read_cpu, commit_cpu, indexed, quarantined
        blob, bad, secs, cpu = result
        read_s += secs
        read_cpu += cpu
        tc, cc = time.perf_counter(), time.thread_time()
        indexed += catalog.insert_file_rows(pickle.loads(blob))
        quarantined += bad
        commit_s += time.perf_counter() - tc
        commit_cpu += time.thread_time() - cc

    if client is None:
        for sub in subs:
            _commit(timed_header_rows(sub, secret, run_id))
    elif subs:
        packed = [pickle.dumps(sub, protocol=pickle.HIGHEST_PROTOCOL) for sub in subs]  # see header_rows
        # Earlier batches first: with several batch tasks in flight, Dask would otherwise interleave
        # their sub-batches, every batch would end near the end of them all, and the next batch would
        # start late (100k files, 2 tasks in flight: 10.0 s -> 7.2 s).
        futures = client.map(timed_header_rows, packed, secret=secret, run_id=run_id, pure=False,
                             priority=-batch)
        for fut in distributed.as_completed(futures, loop=client.loop):
            result = fut.result()
            fut.release()
            _commit(result)
    rec = BatchRecord(
        manifest=manifest.key,
        batch=batch,
        first_file=batch * manifest.files_per_task,
        files=len(items),
        indexed=indexed,
        already_indexed=len(items) - len(todo),
        quarantined=quarantined,
        read_seconds=round(read_s, 4),
        commit_seconds=round(commit_s, 4),
        lookup_seconds=round(lookup_s, 4),
        work_seconds=round(time.perf_counter() - t0, 4),
        read_cpu_seconds=round(read_cpu, 4),
        commit_cpu_seconds=round(commit_cpu, 4),
        lookup_cpu_seconds=round(lookup_cpu, 4),
        workers=threads,
        run_id=run_id,
        host=socket.gethostname(),
        pid=os.getpid(),
        started_at=started,
        finished_at=time.time(),
    )
    if not write_text_atomic(record_path(ws, manifest.key, batch), rec.model_dump_json(indent=1), exclusive=True):
        return load_record(ws, manifest.key, batch) or rec  # a concurrent run finished it first
    return rec


class BulkTotals(BaseModel):
    """Sums over the batch records of a manifest (for progress artifacts, status and the bench)."""

    batches_done: int = 0
    batches_total: int = 0
    files: int = 0
    indexed: int = 0
    already_indexed: int = 0
    quarantined: int = 0
    read_seconds: float = 0.0
    commit_seconds: float = 0.0
    lookup_seconds: float = 0.0
    work_seconds: float = 0.0
    read_cpu_seconds: float = 0.0
    commit_cpu_seconds: float = 0.0
    lookup_cpu_seconds: float = 0.0


#: BulkTotals fields that are sums of the BatchRecord field of the same name
_SUMMED = tuple(f for f in BulkTotals.model_fields if f not in ("batches_done", "batches_total"))


def totals(ws: Workspace, manifest: BulkManifest) -> BulkTotals:
    t = BulkTotals(batches_total=manifest.n_batches)
    for rec in iter_records(ws, manifest):
        t.batches_done += 1
        for name in _SUMMED:
            setattr(t, name, getattr(t, name) + getattr(rec, name))
    return t


def latest_manifest(ws: Workspace) -> BulkManifest | None:
    """The most recently created manifest of the workspace (for ``medseg status``), or None."""
    found = sorted(bulk_root(ws).glob(f"*/{MANIFEST_NAME}"), key=lambda p: p.stat().st_mtime)
    return BulkManifest.model_validate_json(found[-1].read_text()) if found else None
