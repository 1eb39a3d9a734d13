"""The catalog's ``files`` table: every file seen, with its header summary (JSON) and keys.

:func:`file_row` and :func:`header_of_row` convert between a header dict and its row.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterable
from typing import Any

from medseg.io.catalog.connection import CatalogConnection
from medseg.io.reasons import TRANSIENT_REASONS

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

class FilesTable(CatalogConnection):
    """Queries and writes of the ``files`` table (the part of the catalog that persists across runs)."""

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

    def first_file_of_series(self) -> dict[str, str]:
        """``{series_uid: first path}`` of every series with a readable file: DICOM series, and the
        ``"file:<key>"`` series of NIfTI/NRRD files. Tells which source a case or label came from."""
        with self._connect() as con:
            rows = con.execute(
                "SELECT series_uid, MIN(path) AS path FROM files WHERE status = 'ok' AND series_uid IS NOT NULL "
                "GROUP BY series_uid"
            ).fetchall()
        return {str(r["series_uid"]): str(r["path"]) for r in rows}

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
