"""The catalog's schema (version in ``PRAGMA user_version``) and this process's connection to it.

Each process keeps one connection per catalog file (WAL mode), shared by its threads: one
transaction at a time per process (two connections of one process writing in turn would drop each
other's page cache on every commit), while readers in other processes never block the writer for long.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    path TEXT PRIMARY KEY, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL, status TEXT NOT NULL,
    kind TEXT, sop_uid TEXT, series_uid TEXT, study_key TEXT, patient_key TEXT, modality TEXT,
    reason TEXT, message TEXT, header TEXT, run_id TEXT
);
CREATE INDEX IF NOT EXISTS files_series ON files(series_uid);
CREATE INDEX IF NOT EXISTS files_study ON files(study_key, status);
CREATE INDEX IF NOT EXISTS files_refs ON files(kind) WHERE kind IN ('seg', 'rtstruct');
DROP INDEX IF EXISTS files_sop;
CREATE TABLE IF NOT EXISTS series (
    series_key TEXT PRIMARY KEY, case_id TEXT, series_uid TEXT, stack_key TEXT, kind TEXT,
    study_key TEXT, patient_key TEXT, modality TEXT, description TEXT, n_instances INTEGER,
    shape TEXT, spacing TEXT, geometry TEXT, status TEXT, reason TEXT, message TEXT,
    content_hash TEXT, volume_path TEXT, has_labels INTEGER, label_names TEXT, label_source TEXT,
    sop_uids TEXT, run_id TEXT, updated_at REAL
);
CREATE INDEX IF NOT EXISTS series_uid ON series(series_uid);
CREATE TABLE IF NOT EXISTS studies (
    study_key TEXT PRIMARY KEY, patient_key TEXT, n_series INTEGER, run_id TEXT
);
CREATE TABLE IF NOT EXISTS quarantine (
    id INTEGER PRIMARY KEY AUTOINCREMENT, path TEXT, series_uid TEXT, case_id TEXT,
    reason TEXT NOT NULL, message TEXT, run_id TEXT
);
CREATE TABLE IF NOT EXISTS ingest_runs (
    run_id TEXT PRIMARY KEY, started_at REAL, finished_at REAL, sources TEXT, summary TEXT
);
"""


class CatalogSchemaError(RuntimeError):
    """The catalog file was written by an incompatible medseg version."""


#: connections inherited by a forked child: kept referenced so that they are never closed there
_INHERITED: list[sqlite3.Connection] = []


class _SharedConnection:
    """This process's connection to one catalog file, used by one thread at a time (``lock``)."""

    def __init__(self, path: Path) -> None:
        self.con = sqlite3.connect(str(path), timeout=60, check_same_thread=False)
        self.con.row_factory = sqlite3.Row
        self.con.execute("PRAGMA journal_mode=WAL")
        self.con.execute("PRAGMA synchronous=NORMAL")  # WAL: still atomic and durable across process crashes
        self.con.execute("PRAGMA foreign_keys=ON")
        self.lock = threading.RLock()
        self.pid = os.getpid()
        self.depth = 0  # transaction nesting of the thread holding ``lock``


_SHARED: dict[str, _SharedConnection] = {}
_SHARED_LOCK = threading.Lock()


def _after_fork_in_child() -> None:
    global _SHARED_LOCK
    _SHARED_LOCK = threading.Lock()  # another thread may have held it at the fork


os.register_at_fork(after_in_child=_after_fork_in_child)


class CatalogConnection:
    """This process's connection to the catalog at ``path`` (created on first use), checked for its schema.

    ``create=False`` is for readers: the catalog must exist (``FileNotFoundError`` otherwise) and
    opening it writes nothing (no folder, file or schema set-up), so a reader never waits for a
    running ingest's write lock.
    """

    def __init__(self, path: Path, create: bool = True) -> None:
        self.path = Path(path)
        if not create and not self.path.is_file():
            raise FileNotFoundError(f"no catalog at {self.path}: run `medseg ingest` first")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._key = str(self.path.resolve())
        with self._connect() as con:
            version = con.execute("PRAGMA user_version").fetchone()[0]
            if version not in (0, SCHEMA_VERSION):
                raise CatalogSchemaError(
                    f"{self.path} has catalog schema {version}, this medseg reads {SCHEMA_VERSION}; "
                    "re-ingest into a new workspace or upgrade medseg"
                )
            if create:
                con.executescript(_SCHEMA)
                con.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        """One transaction on this process's connection to the catalog (other threads wait for it).

        Opening and closing a WAL connection per call costs ~2 ms (pragmas, and a checkpoint when the
        last connection closes): seconds per ingest of a large archive. A nested call joins the
        outer transaction instead of committing it early.
        """
        shared = self._shared()
        with shared.lock:
            if shared.depth:
                yield shared.con
                return
            shared.depth = 1
            try:
                with shared.con:  # one transaction
                    yield shared.con
            finally:
                shared.depth = 0

    def _connection(self) -> sqlite3.Connection:
        return self._shared().con

    def _shared(self) -> _SharedConnection:
        with _SHARED_LOCK:
            shared = _SHARED.get(self._key)
            if shared is None or shared.pid != os.getpid():  # a forked child must not reuse its parent's connection
                if shared is not None:  # nor close it (SQLite: never use or close a connection across fork)
                    _INHERITED.append(shared.con)
                shared = _SHARED[self._key] = _SharedConnection(self.path)
            return shared

    def close(self) -> None:
        """Close this process's connection to the catalog (reopened on next use)."""
        with _SHARED_LOCK:
            shared = _SHARED.get(self._key)
            if shared is None or shared.pid != os.getpid():
                return
            del _SHARED[self._key]
        with shared.lock:
            shared.con.close()
