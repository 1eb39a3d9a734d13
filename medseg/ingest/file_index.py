"""Ingest's first two phases: list the sources into scratch files, read the new or changed files' headers.

The file lists live in scratch files in the workspace (``.scan-<run>.pkl`` / ``.todo-<run>.pkl``:
:mod:`medseg.runtime.scratch` lists), not in memory: flat memory whatever the archive
size. Header batches go to Dask with a bounded number in flight and are committed to the catalog
batch by batch. :func:`index_files` is the building block of the bulk flow.
"""

from __future__ import annotations

import logging
import os
import pickle
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import distributed

from medseg.config import IngestConfig
from medseg.deid_key import resolve_deid_key
from medseg.ingest.headers import read_header_batch
from medseg.ingest.source_walk import SourceFile, SourceProblem, walk_sources
from medseg.io.catalog import Catalog, file_row
from medseg.io.volume_files import DATASET_JSON, volume_suffix
from medseg.runtime.batching import batched, bounded_map
from medseg.runtime.cluster import TaskSizer, worker_threads
from medseg.runtime.scratch import SCRATCH_CHUNK, read_scratch, write_scratch
from medseg.workspace import Workspace

log = logging.getLogger(__name__)

ProgressFn = Callable[[str, int, int], None]


def scan_sources(sources: list[Path], problems: list[SourceProblem] | None = None) -> Iterator[SourceFile]:
    """Yield ``(absolute path, size, mtime_ns)`` of every regular file under ``sources``; see
    :func:`medseg.ingest.source_walk.walk_sources` (``problems`` collects the entries not ingested)."""
    return walk_sources(sources, problems)


def clean_scratch(ws: Workspace) -> int:
    """Remove the scratch file lists (``.scan-*.pkl``, ``.todo-*.pkl``: source paths) a killed run left.

    Called under the workspace lock, so no other ingest is using them. Returns how many were removed.
    """
    removed = 0
    for pattern in (".scan-*.pkl", ".todo-*.pkl"):
        for path in ws.root.glob(pattern):
            path.unlink(missing_ok=True)
            removed += 1
    if removed:
        log.info("removed %d scratch file(s) of an interrupted ingest", removed)
    return removed


def is_volume_file(path: str) -> bool:
    return bool(volume_suffix(path)) or os.path.basename(path) == DATASET_JSON


def scan_to_disk(sources: list[Path], scratch: Path, volume_files: bool = True,
                 problems: list[SourceProblem] | None = None) -> tuple[int, int]:
    """Write ``(path, size, mtime_ns)`` of every source file to ``scratch`` (a scratch list); entries
    that are not ingestible files go to ``problems``.

    Returns:
        (files written, NIfTI/NRRD/dataset.json files left out because ``volume_files`` is false).
    """
    ignored = 0

    def kept() -> Iterator[SourceFile]:
        nonlocal ignored
        for item in scan_sources(sources, problems):
            if not volume_files and is_volume_file(item[0]):
                ignored += 1
                continue
            yield item

    return write_scratch(scratch, kept()), ignored


def select_unindexed(catalog: Catalog, scratch: Path, todo: Path) -> int:
    """Copy the scanned files not indexed with the same size and mtime to ``todo``; return their count."""

    def unindexed() -> Iterator[tuple[str, int, int]]:
        for chunk in batched(read_scratch(scratch), SCRATCH_CHUNK):
            known = catalog.lookup_files([c[0] for c in chunk])
            yield from ((p, size, mtime) for p, size, mtime in chunk if known.get(p) != (size, mtime))

    return write_scratch(todo, unindexed())


def read_headers(
    items: Iterable[tuple[str, int, int]],
    total: int,
    cfg: IngestConfig,
    client: distributed.Client | None,
    progress: ProgressFn | None,
    catalog: Catalog,
    run_id: str,
    secret: str,
) -> int:
    """Read headers batch by batch (``secret``: the de-identification key); each batch is committed to the
    catalog as it completes.

    ``items`` is consumed lazily and at most a few batches per worker are in flight, so memory
    does not grow with the archive.
    """
    done = 0
    if client is None:
        for batch in batched(items, cfg.files_per_batch):
            done += catalog.upsert_files(read_header_batch(batch, secret), run_id)
            if progress:
                progress("headers", done, total)
        return done
    batches = batched(items, TaskSizer.for_run(total, cfg.files_per_batch, worker_threads(client)))
    packed = (pickle.dumps(b, protocol=pickle.HIGHEST_PROTOCOL) for b in batches)
    for blob in bounded_map(client, header_rows_pickled, packed, secret=secret, run_id=run_id):
        done += catalog.insert_file_rows(pickle.loads(blob))
        if progress:
            progress("headers", done, total)
    return done


def header_rows(items: list[tuple[str, int, int]] | bytes, secret: str, run_id: str) -> list[tuple[Any, ...]]:
    """Catalog rows of a batch of files, made on the worker (the main process only stores them).

    ``items`` may come pickled, as Dask tasks get them: Dask walks a list argument element by element
    looking for futures (~15 ms for 1,000 files on submit), a bytes argument not at all.
    """
    batch = pickle.loads(items) if isinstance(items, bytes) else items
    return [file_row(h, run_id) for h in read_header_batch(batch, secret)]


def header_rows_pickled(items: list[tuple[str, int, int]] | bytes, secret: str, run_id: str) -> bytes:
    """:func:`header_rows` as one pickle: Dask would otherwise serialise a list result item by item
    (~15 ms per 256-row batch on each side)."""
    return pickle.dumps(header_rows(items, secret, run_id), protocol=pickle.HIGHEST_PROTOCOL)


def index_files(
    items: list[tuple[str, int, int]],
    ws: Workspace,
    cfg: IngestConfig,
    client: distributed.Client | None = None,
    progress: ProgressFn | None = None,
    run_id: str | None = None,
) -> int:
    """Read and commit the headers of the ``(path, size, mtime_ns)`` items not yet indexed as they are.

    The building block of the bulk flow: one call per batch of files; a later :func:`ingest` of the
    same sources finds them indexed and only plans and builds volumes. Idempotent: files already in
    the catalog with the same size and mtime are skipped. Returns the number of headers read.
    """
    catalog = Catalog(ws.catalog_path)
    known = catalog.lookup_files([p for p, _, _ in items])
    todo = [(p, s, m) for p, s, m in items if known.get(p) != (s, m)]
    if not todo:
        return 0
    return read_headers(todo, len(todo), cfg, client, progress, catalog, run_id or "bulk",
                         resolve_deid_key(cfg, ws))
