"""The catalog's run state (``series``, ``studies``, ``quarantine``, ``ingest_runs``) and :class:`Catalog`."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from medseg.io.catalog.files import FilesTable

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


class Catalog(FilesTable):
    """Read/write access to the ingest catalog at ``path`` (created on first use).

    ``create=False`` is for readers: the catalog must exist (``FileNotFoundError`` otherwise) and
    opening it writes nothing (no folder, file or schema set-up), so a reader never waits for a
    running ingest's write lock.
    """

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

    def cases_written_by(self, run_id: str) -> list[str]:
        """Case ids whose volume store ingest run ``run_id`` wrote (new or changed cases), sorted.

        A case left unchanged keeps the run id of the run that last wrote it.
        """
        with self._connect() as con:
            rows = con.execute(
                "SELECT case_id FROM series WHERE kind = 'image' AND status = 'ingested' AND run_id = ? "
                "AND volume_path IS NOT NULL ORDER BY case_id", (run_id,)
            ).fetchall()
        return [str(r["case_id"]) for r in rows]

    def newest_writing_run(self) -> str | None:
        """The id of the newest ingest run that wrote a case store still in the catalog (None: no case)."""
        with self._connect() as con:
            row = con.execute(
                "SELECT s.run_id FROM series s JOIN ingest_runs r ON r.run_id = s.run_id "
                "WHERE s.kind = 'image' AND s.status = 'ingested' AND s.volume_path IS NOT NULL "
                "ORDER BY r.started_at DESC LIMIT 1"
            ).fetchone()
        return str(row["run_id"]) if row else None

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

    def image_series_files(self, case_id: str) -> tuple[dict[str, Any], list[tuple[str, str]]]:
        """The image series row of ``case_id`` (an ingested one first) and ``(path, sop_uid)`` of its files.

        Raises:
            KeyError: ``case_id`` has no image series in the catalog.
        """
        with self._connect() as con:
            row = con.execute(
                "SELECT * FROM series WHERE case_id = ? AND kind = 'image' ORDER BY status = 'ingested' DESC LIMIT 1",
                (case_id,),
            ).fetchone()
            if row is None:
                raise KeyError(case_id)
            files = con.execute(
                "SELECT path, sop_uid FROM files WHERE series_uid = ? AND status = 'ok' AND sop_uid IS NOT NULL",
                (row["series_uid"],),
            ).fetchall()
        return dict(row), [(str(f["path"]), str(f["sop_uid"])) for f in files]

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
