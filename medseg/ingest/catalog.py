"""SQLite catalog of an ingested archive (``<workspace>/catalog.sqlite``).

Tables (schema version in ``PRAGMA user_version``):

* ``files``       every file seen: path, size, mtime_ns, status, header summary (JSON), UIDs, keys
* ``series``      every image stack / NIfTI-NRRD image (``kind="image"``) and label source
                  (``"seg"``, ``"rtstruct"``, ``"mask"``, ``"label_file"``): case_id, geometry,
                  status, reason, content hash ... (NIfTI/NRRD series_uid = ``"file:<path key>"``)
* ``studies``     study_key → patient_key, number of series
* ``quarantine``  path, series, reason code, message (rebuilt by every ingest run)
* ``ingest_runs`` run_id, times, sources, summary

De-identification: no PatientName/PatientID/BirthDate/AccessionNumber/dates are stored; patients
and studies appear only as keyed hashes. SeriesInstanceUID and SOPInstanceUID *are* stored (needed
to resolve SEG references and to write DICOM SEG results back): treat the catalog file as
confidential and do not ship it with models or reports.

Each process keeps one connection per catalog file (WAL mode), shared by its threads: one
transaction at a time per process (two connections of one process writing in turn would drop each
other's page cache on every commit), while readers in other processes never block the writer for long.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from medseg.io.reasons import TRANSIENT_REASONS

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

FILE_COLUMNS = (
    "path",
    "size",
    "mtime_ns",
    "status",
    "kind",
    "sop_uid",
    "series_uid",
    "study_key",
    "patient_key",
    "modality",
    "reason",
    "message",
    "header",
    "run_id",
)
SERIES_COLUMNS = (
    "series_key",
    "case_id",
    "series_uid",
    "stack_key",
    "kind",
    "study_key",
    "patient_key",
    "modality",
    "description",
    "n_instances",
    "shape",
    "spacing",
    "geometry",
    "status",
    "reason",
    "message",
    "content_hash",
    "volume_path",
    "has_labels",
    "label_names",
    "label_source",
    "sop_uids",
    "run_id",
    "updated_at",
)
QUARANTINE_COLUMNS = ("path", "series_uid", "case_id", "reason", "message", "run_id")


class CatalogSchemaError(RuntimeError):
    """The catalog file was written by an incompatible medseg version."""


class CaseRecord(BaseModel):
    """An ingested image series with a complete volume store (arrays are ``(z, y, x)``)."""

    case_id: str
    series_uid: str
    patient_key: str
    study_key: str
    modality: str
    description: str
    shape: tuple[int, int, int] = Field(description="(z, y, x) voxels")
    spacing: tuple[float, float, float] = Field(description="(z, y, x) mm")
    volume_path: Path
    has_labels: bool
    label_names: dict[int, str] = Field(default_factory=dict)
    n_instances: int


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


class Catalog:
    """Read/write access to the ingest catalog at ``path`` (created on first use).

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

    # --- files --------------------------------------------------------------------------------
    def known_files(self) -> dict[str, tuple[int, int]]:
        """``{path: (size, mtime_ns)}`` of every indexed file."""
        with self._connect() as con:
            return {
                r["path"]: (r["size"], r["mtime_ns"]) for r in con.execute("SELECT path, size, mtime_ns FROM files")
            }

    def upsert_files(self, headers: Iterable[dict[str, Any]], run_id: str) -> int:
        """Insert or replace file rows from header dicts (see :mod:`medseg.ingest.headers`)."""
        return self.insert_file_rows([file_row(h, run_id) for h in headers])

    def insert_file_rows(self, rows: list[tuple[Any, ...]]) -> int:
        """Insert or replace rows made by :func:`file_row` (workers make them, the catalog only stores them)."""
        with self._connect() as con:
            con.executemany(
                f"INSERT OR REPLACE INTO files ({', '.join(FILE_COLUMNS)}) "
                f"VALUES ({', '.join('?' * len(FILE_COLUMNS))})",
                rows,
            )
        return len(rows)

    def set_file_series(self, series: dict[str, str]) -> None:
        """Record the series key of non-DICOM files (NIfTI/NRRD: ``"file:<key>"``) in ``files.series_uid``."""
        if not series:
            return
        with self._connect() as con:
            con.executemany(
                "UPDATE files SET series_uid = ? WHERE path = ? AND series_uid IS NOT ?",
                [(uid, path, uid) for path, uid in series.items()],
            )

    def delete_files(self, paths: Iterable[str]) -> int:
        items = [(p,) for p in paths]
        with self._connect() as con:
            con.executemany("DELETE FROM files WHERE path = ?", items)
        return len(items)

    def count_files(self, status: str = "ok") -> int:
        """Number of indexed files with ``status``."""
        with self._connect() as con:
            return int(con.execute("SELECT COUNT(*) FROM files WHERE status = ?", (status,)).fetchone()[0])

    def file_headers(self, status: str = "ok", study_keys: list[str | None] | None = None) -> list[dict[str, Any]]:
        """Header dicts (as read by :func:`~medseg.ingest.headers.read_header`) of files with ``status``.

        Args:
            status: file status (``"ok"`` or ``"quarantined"``).
            study_keys: only the files of these studies (a ``None`` key: files without a study, i.e.
                NIfTI/NRRD volumes and dataset.json); None: every file.
        """
        return [header_of_row(r) for r in self.file_header_rows(status, study_keys)]

    def file_header_rows(self, status: str = "ok", study_keys: list[str | None] | None = None) -> list[HeaderRow]:
        """:meth:`file_headers` undecoded (:data:`HeaderRow` tuples, sorted by path), e.g. to decode on a worker."""
        query = "SELECT path, size, mtime_ns, status, reason, message, header FROM files WHERE status = ?"
        args: tuple[Any, ...] = (status,)
        if study_keys is not None:
            query += " AND (" + " OR ".join("study_key IS ?" for _ in study_keys) + ")"
            args = (status, *study_keys)
        with self._connect() as con:
            cur = con.cursor()
            cur.row_factory = None  # plain tuples
            return list(cur.execute(query + " ORDER BY path", args))

    def study_groups(self, status: str = "ok") -> list[list[str | None]]:
        """Study keys of files with ``status``, grouped so that no series spans two groups; sorted.

        Normally one study per group; studies sharing a SeriesInstanceUID (broken exports, test data)
        are merged into one group. ``None`` (files without a study: NIfTI/NRRD) is a group of its own, last.
        """
        with self._connect() as con:
            keys = [r[0] for r in con.execute("SELECT DISTINCT study_key FROM files WHERE status = ?", (status,))]
            shared = con.execute(
                "SELECT series_uid, GROUP_CONCAT(DISTINCT study_key) FROM files WHERE status = ? "
                "AND series_uid IS NOT NULL AND study_key IS NOT NULL GROUP BY series_uid "
                "HAVING COUNT(DISTINCT study_key) > 1",
                (status,),
            ).fetchall()
            links = [joined for _, joined in shared] + self._reference_links(con, status)
        parent = {k: k for k in keys if k is not None}

        def root(k: str) -> str:
            while parent[k] != k:
                parent[k] = parent[parent[k]]
                k = parent[k]
            return k

        for joined in links:
            first, *rest = sorted(joined.split(","))
            for other in rest:
                a, b = sorted((root(first), root(other)))
                parent[b] = a
        groups: dict[str, list[str | None]] = {}
        for k in sorted(parent):
            groups.setdefault(root(k), []).append(k)
        out = [groups[r] for r in sorted(groups)]
        return out + ([[None]] if None in keys else [])

    @staticmethod
    def _reference_links(con: sqlite3.Connection, status: str) -> list[str]:
        """``"studyA,studyB"`` for each SEG/RTSTRUCT whose referenced series (or instances) lie in other studies.

        The SEG/RTSTRUCT rows are found through the partial index ``files_refs`` (no scan of
        ``files``); their referenced SeriesInstanceUIDs are looked up all together, through the
        ``files_series`` index (on the bench archive: 26 -> 17 ms for 556 SEGs). SOPInstanceUIDs are not
        indexed (random UIDs make such an index the largest cost of indexing a big archive): the few
        objects that reference instances only are resolved together, in one scan of ``files``.
        """
        links: list[str] = []
        by_sop: list[tuple[str, str]] = []  # (referenced SOPInstanceUID, study of the referencing object)
        by_series: list[tuple[str, list[str]]] = []  # (study of the referencing object, referenced series)
        for study_key, header in con.execute(  # the partial index files_refs holds only these rows
            "SELECT study_key, header FROM files WHERE kind IN ('seg', 'rtstruct') AND status = ?", (status,)
        ):
            if study_key is None:
                continue
            h = json.loads(header or "{}")
            series = list(h.get("ref_series_uids") or [])
            if series:
                by_series.append((study_key, series))
            else:
                by_sop.extend((sop, study_key) for sop in list(h.get("ref_sop_uids") or [])[:50])
        wanted = sorted({uid for _, series in by_series for uid in series})
        studies_of: dict[str, set[str]] = {}
        for i in range(0, len(wanted), 500):  # all referenced series at once, not one query per object
            chunk = wanted[i : i + 500]
            for uid, study in con.execute(
                f"SELECT DISTINCT series_uid, study_key FROM files WHERE series_uid IN ({','.join('?' * len(chunk))}) "
                "AND study_key IS NOT NULL",
                chunk,
            ):
                studies_of.setdefault(uid, set()).add(study)
        for study_key, series in by_series:
            found = set().union(*(studies_of.get(uid, ()) for uid in series))
            found.discard(study_key)
            if found:
                links.append(",".join([study_key, *sorted(found)]))
        if by_sop:
            con.execute("CREATE TEMP TABLE IF NOT EXISTS ref_sops (sop TEXT, study_key TEXT)")
            con.execute("DELETE FROM ref_sops")
            con.executemany("INSERT INTO ref_sops VALUES (?, ?)", by_sop)
            con.execute("CREATE INDEX IF NOT EXISTS temp.ref_sops_sop ON ref_sops(sop)")
            pairs = con.execute(
                "SELECT DISTINCT r.study_key, f.study_key FROM files f JOIN ref_sops r ON f.sop_uid = r.sop "
                "WHERE f.study_key IS NOT NULL AND f.study_key != r.study_key"
            ).fetchall()
            con.execute("DROP TABLE ref_sops")
            links.extend(f"{a},{b}" for a, b in pairs)
        return links

    def lookup_files(self, paths: list[str]) -> dict[str, tuple[int, int]]:
        """``{path: (size, mtime_ns)}`` of those ``paths`` that are indexed for good (chunked ``IN`` queries).

        Files quarantined for a transient reason (:data:`~medseg.io.reasons.TRANSIENT_REASONS`, e.g. a
        permission error) are left out, so every run reads them again.
        """
        out: dict[str, tuple[int, int]] = {}
        transient = sorted(r.value for r in TRANSIENT_REASONS)
        retry = f"(status = 'quarantined' AND reason IN ({','.join('?' * len(transient))}))"
        with self._connect() as con:
            for i in range(0, len(paths), 500):
                chunk = paths[i : i + 500]
                marks = ",".join("?" * len(chunk))
                query = f"SELECT path, size, mtime_ns FROM files WHERE path IN ({marks}) AND NOT {retry}"
                for r in con.execute(query, [*chunk, *transient]):
                    out[r["path"]] = (r["size"], r["mtime_ns"])
        return out

    def count_retry_files(self) -> int:
        """Files quarantined for a transient reason (read again by the next ingest)."""
        transient = sorted(r.value for r in TRANSIENT_REASONS)
        query = (f"SELECT COUNT(*) FROM files WHERE status = 'quarantined' "
                 f"AND reason IN ({','.join('?' * len(transient))})")
        with self._connect() as con:
            return int(con.execute(query, transient).fetchone()[0])

    def files_not_in(self, seen: Iterable[str], roots: list[str], n_seen: int = -1) -> list[str]:
        """Indexed files under ``roots`` that are not in ``seen`` (the files removed from the sources).

        ``seen`` is streamed into a scratch table of the catalog, so memory stays flat in archive size.
        ``n_seen``: how many paths ``seen`` holds, all of them indexed already (as after an ingest's
        header phase); when the catalog holds exactly that many files under ``roots``, none was
        removed and ``seen`` is not read.
        """
        if n_seen >= 0 and self._count_under(roots) == n_seen:
            return []
        with self._connect() as con:
            con.execute("CREATE TEMP TABLE IF NOT EXISTS seen (path TEXT PRIMARY KEY)")
            con.execute("DELETE FROM seen")
            con.executemany("INSERT OR IGNORE INTO seen VALUES (?)", ((p,) for p in seen))
            rows = con.execute("SELECT path FROM files WHERE path NOT IN (SELECT path FROM seen)").fetchall()
            con.execute("DROP TABLE seen")
        prefixes = [r.rstrip(os.sep) + os.sep for r in roots]
        return [r["path"] for r in rows if any(r["path"] == root or r["path"].startswith(pre)
                                                for root, pre in zip(roots, prefixes, strict=True))]

    def _count_under(self, roots: list[str]) -> int:
        """Indexed files under ``roots`` (a file counts once per root it is under)."""
        total = 0
        with self._connect() as con:
            for root in roots:
                prefix = root.rstrip(os.sep) + os.sep
                upper = prefix[:-1] + chr(ord(os.sep) + 1)  # every path starting with ``prefix`` sorts below
                total += con.execute(
                    "SELECT COUNT(*) FROM files WHERE path = ? OR (path >= ? AND path < ?)", (root, prefix, upper)
                ).fetchone()[0]
        return total

    # --- series / studies / quarantine (rewritten by each run) ---------------------------------
    def series_rows(self) -> dict[str, dict[str, Any]]:
        """Raw series rows keyed by ``series_key``."""
        with self._connect() as con:
            return {r["series_key"]: dict(r) for r in con.execute("SELECT * FROM series")}

    def replace_run_state(
        self, series: list[dict[str, Any]], quarantine: list[dict[str, Any]], studies: list[dict[str, Any]]
    ) -> None:
        """Atomically replace the series, quarantine and studies tables."""
        now = time.time()
        with self._connect() as con:
            con.execute("DELETE FROM series")
            con.executemany(
                f"INSERT INTO series ({', '.join(SERIES_COLUMNS)}) VALUES ({', '.join('?' * len(SERIES_COLUMNS))})",
                [tuple(_sql(row.get(c, now if c == "updated_at" else None)) for c in SERIES_COLUMNS) for row in series],
            )
            con.execute("DELETE FROM quarantine")
            con.executemany(
                f"INSERT INTO quarantine ({', '.join(QUARANTINE_COLUMNS)}) "
                f"VALUES ({', '.join('?' * len(QUARANTINE_COLUMNS))})",
                [tuple(row.get(c) for c in QUARANTINE_COLUMNS) for row in quarantine],
            )
            con.execute("DELETE FROM studies")
            con.executemany(
                "INSERT INTO studies (study_key, patient_key, n_series, run_id) VALUES (?, ?, ?, ?)",
                [(s["study_key"], s["patient_key"], s["n_series"], s.get("run_id")) for s in studies],
            )

    # --- runs ---------------------------------------------------------------------------------
    def start_run(self, run_id: str, sources: list[str]) -> None:
        with self._connect() as con:
            con.execute(
                "INSERT OR REPLACE INTO ingest_runs (run_id, started_at, sources) VALUES (?, ?, ?)",
                (run_id, time.time(), json.dumps(sources)),
            )

    def finish_run(self, run_id: str, summary: dict[str, Any]) -> None:
        with self._connect() as con:
            con.execute(
                "UPDATE ingest_runs SET finished_at = ?, summary = ? WHERE run_id = ?",
                (time.time(), json.dumps(summary), run_id),
            )

    def runs(self) -> list[dict[str, Any]]:
        with self._connect() as con:
            rows = con.execute("SELECT * FROM ingest_runs ORDER BY started_at").fetchall()
        return [
            {
                **dict(r),
                "sources": json.loads(r["sources"] or "[]"),
                "summary": json.loads(r["summary"]) if r["summary"] else None,
            }
            for r in rows
        ]

    # --- public queries -----------------------------------------------------------------------
    def cases(self) -> list[CaseRecord]:
        """Ingested image series that have a volume store, sorted by case_id."""
        with self._connect() as con:
            rows = con.execute(
                "SELECT * FROM series WHERE kind = 'image' AND status = 'ingested' "
                "AND volume_path IS NOT NULL ORDER BY case_id"
            ).fetchall()
        return [_case(dict(r)) for r in rows if Path(r["volume_path"]).is_dir()]

    def case(self, key: str) -> CaseRecord:
        """The case whose case_id or SeriesInstanceUID is ``key``.

        Raises:
            KeyError: No ingested case matches, or a SeriesInstanceUID maps to several stacks.
        """
        matches = [c for c in self.cases() if key in (c.case_id, c.series_uid)]
        if len(matches) == 1:
            return matches[0]
        if not matches:
            raise KeyError(
                f"no ingested case with case_id or SeriesInstanceUID {key!r} in {self.path} "
                "(see `series_table()` / the quarantine for series that were not ingested)"
            )
        raise KeyError(
            f"SeriesInstanceUID {key!r} was split into {len(matches)} stacks; use one of the case ids "
            f"{[c.case_id for c in matches]}"
        )

    def series_table(self, details: bool = False) -> list[dict[str, Any]]:
        """Every series/stack, image cases first.

        Keys: case_id, kind ("image" | "mask" | "seg" | "rtstruct" | "label_file"), modality, description, n_instances,
        shape (z, y, x), spacing (z, y, x mm, rounded to 0.1 µm), status ("ingested" |
        "label_source" | "quarantined"), reason, has_labels. ``details=True`` adds message,
        label_source, study_key and patient_key.
        """
        with self._connect() as con:
            rows = con.execute("SELECT * FROM series ORDER BY kind, status, case_id").fetchall()
        out = []
        for r in rows:
            row: dict[str, Any] = {
                "case_id": r["case_id"],
                "kind": r["kind"],
                "modality": r["modality"],
                "description": r["description"],
                "n_instances": r["n_instances"],
                "shape": tuple(json.loads(r["shape"])) if r["shape"] else None,
                "spacing": tuple(round(v, 4) for v in json.loads(r["spacing"])) if r["spacing"] else None,
                "status": r["status"],
                "reason": r["reason"],
                "has_labels": bool(r["has_labels"]),
            }
            if details:
                row.update(
                    message=r["message"],
                    label_source=r["label_source"],
                    study_key=r["study_key"],
                    patient_key=r["patient_key"],
                )
            out.append(row)
        return out

    def quarantine(self) -> list[dict[str, Any]]:
        """Every quarantined file or series: path, series (UID, if any), case_id, reason code, message."""
        with self._connect() as con:
            rows = con.execute("SELECT * FROM quarantine ORDER BY reason, path").fetchall()
        return [
            {
                "path": r["path"],
                "series": r["series_uid"],
                "case_id": r["case_id"],
                "reason": r["reason"],
                "message": r["message"],
                "run_id": r["run_id"],
            }
            for r in rows
        ]


_ROW_FIELDS = ("path", "size", "mtime_ns", "status", "reason", "message")


#: One file as :meth:`Catalog.file_header_rows` gives it:
#: ``(path, size, mtime_ns, status, reason, message, header JSON)``
HeaderRow = tuple[str, int, int, str, str | None, str | None, str | None]


def header_of_row(row: HeaderRow) -> dict[str, Any]:
    """The header dict of a :data:`HeaderRow`."""
    path, size, mtime_ns, status, reason, message, header = row
    return {
        **json.loads(header or "{}"),
        "path": path,
        "size": size,
        "mtime_ns": mtime_ns,
        "status": status,
        "reason": reason,
        "message": message,
    }


def file_row(h: dict[str, Any], run_id: str) -> tuple[Any, ...]:
    """The ``files`` table row (in :data:`FILE_COLUMNS` order) of one header dict."""
    header = {k: v for k, v in h.items() if k not in _ROW_FIELDS}
    return (
        h["path"],
        h["size"],
        h["mtime_ns"],
        h["status"],
        h.get("kind"),
        h.get("sop_uid"),
        h.get("series_uid"),
        h.get("study_key"),
        h.get("patient_key"),
        h.get("modality"),
        h.get("reason"),
        h.get("message"),
        json.dumps(header),
        run_id,
    )


def _sql(value: Any) -> Any:
    if isinstance(value, list | tuple | dict):
        return json.dumps(value)
    if isinstance(value, bool):
        return int(value)
    return value


def _case(r: dict[str, Any]) -> CaseRecord:
    return CaseRecord(
        case_id=r["case_id"],
        series_uid=r["series_uid"],
        patient_key=r["patient_key"] or "",
        study_key=r["study_key"] or "",
        modality=r["modality"] or "",
        description=r["description"] or "",
        shape=tuple(json.loads(r["shape"])),
        spacing=tuple(json.loads(r["spacing"])),
        volume_path=Path(r["volume_path"]),
        has_labels=bool(r["has_labels"]),
        label_names={int(k): v for k, v in json.loads(r["label_names"] or "{}").items()},
        n_instances=int(r["n_instances"] or 0),
    )
