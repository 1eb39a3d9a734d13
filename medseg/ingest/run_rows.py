"""The rows an ingest run stores at its end: series and quarantine rows of each planned group, the
files' own quarantine rows, the studies; and the volume stores of cases no longer ingested."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

from medseg.ingest.build import src_paths
from medseg.ingest.case_plan import IngestPlan, PlannedCase, stack_row
from medseg.io.catalog import Catalog
from medseg.io.reasons import Reason
from medseg.workspace import Workspace

log = logging.getLogger(__name__)

LABEL_KINDS = ("seg", "mask", "rtstruct", "label_file")  # series-table kinds that label an image


def finalise(
    plan: IngestPlan,
    built: list[PlannedCase],
    unchanged: list[PlannedCase],
    results: dict[str, dict[str, Any]],
    previous: dict[str, dict[str, Any]],
    run_id: str,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    rows = [dict(r, run_id=run_id) for r in plan.series_rows]
    quarantine = [dict(q, run_id=run_id) for q in plan.quarantine]
    quarantine.extend(dict(q, run_id=run_id) for q in _label_row_status(rows, built, results, previous))
    for pc in unchanged:
        prev = previous[pc.job.case_id]
        rows.append({**prev, "run_id": prev.get("run_id")})
    for pc in built:
        res = results[pc.job.case_id]
        row = stack_row(pc.stack, pc.job.case_id, "ingested" if res["ok"] else "quarantined")
        row.update(run_id=run_id, content_hash=pc.content_hash if res["ok"] else None)
        for err in res.get("label_errors", []):  # one row per file of the label source (the culprit's first)
            paths = [err["path"]] + [p for p in err.get("paths", []) if p != err["path"]]
            quarantine.extend(
                {
                    "path": p,
                    "series_uid": err["series_uid"],
                    "case_id": pc.job.case_id,
                    "reason": err["reason"],
                    "message": err["message"],
                    "run_id": run_id,
                }
                for p in paths
            )
        if res["ok"]:
            row.update(
                volume_path=pc.job.volume_path,
                has_labels=bool(res.get("has_labels")),
                label_names={str(k): v for k, v in res["label_names"].items()},
                label_source=res["label_source"],
            )
        else:
            row.update(reason=res["reason"], message=res["message"], has_labels=False)
            quarantine.extend(
                {
                    "path": p,
                    "series_uid": pc.stack.series_uid,
                    "case_id": pc.job.case_id,
                    "reason": res["reason"],
                    "message": res["message"],
                    "run_id": run_id,
                }
                for p in pc.stack.paths
            )
        rows.append(row)
    return rows, quarantine


#: label kind -> reason when the image it labels was not ingested
_ORPHANED = {"seg": Reason.SEG_UNREFERENCED, "rtstruct": Reason.RTSTRUCT_UNREFERENCED}


def _label_row_status(
    rows: list[dict[str, Any]],
    built: list[PlannedCase],
    results: dict[str, dict[str, Any]],
    previous: dict[str, dict[str, Any]],
) -> list[dict[str, Any]]:
    """A label series/file linked in the plan but unusable by every case that tried it is quarantined,
    and so is one whose every image case failed to build (its quarantine rows are returned).

    Label series linked only to unchanged cases keep the status they got when those were built.
    """
    rebuilt = {ls.series_uid for pc in built for ls in pc.job.labels}
    failed: dict[str, tuple[PlannedCase, list[str]]] = {}  # label uid -> a failed case it labels, its files
    for pc in built:
        if not results[pc.job.case_id].get("ok"):
            for ls in pc.job.labels:
                failed.setdefault(ls.series_uid, (pc, src_paths(ls)))
    orphaned: list[dict[str, Any]] = []
    used: set[str] = set()
    errors: dict[str, dict[str, Any]] = {}
    for res in results.values():
        if res.get("ok"):
            used.update(res.get("label_series_uids", []))
        for err in res.get("label_errors", []):
            errors.setdefault(err["series_uid"], err)
    for row in rows:
        if row.get("kind") not in LABEL_KINDS or row.get("status") != "label_source":
            continue
        uid = row["series_uid"]
        if uid in rebuilt:
            if uid not in used and uid in errors:
                row.update(status="quarantined", reason=errors[uid]["reason"], message=errors[uid]["message"])
            elif uid not in used and uid in failed:
                pc, paths = failed[uid]
                res = results[pc.job.case_id]
                reason = _ORPHANED.get(row["kind"], Reason.LABEL_UNMATCHED).value
                message = (f"{paths[0]}{' ...' if len(paths) > 1 else ''}: labels case {pc.job.case_id}, whose image "
                           f"series was quarantined ({res.get('reason')}); fix that series to use these labels")
                row.update(status="quarantined", reason=reason, message=message)
                orphaned.extend({"path": p, "series_uid": uid, "case_id": pc.job.case_id, "reason": reason,
                                 "message": message} for p in paths)
        elif row["series_key"] in previous:
            prev = previous[row["series_key"]]
            row.update(status=prev.get("status"), reason=prev.get("reason"), message=prev.get("message"))
    return orphaned


def prune_stale_volumes(ws: Workspace, previous: dict[str, dict[str, Any]], rows: list[dict[str, Any]]) -> int:
    """Delete stores of cases ingested before but not now (files removed, series now invalid).

    Downstream stages list ``ws.volumes_dir``, so it must hold exactly the ingested cases. Only
    stores the catalog itself recorded inside ``ws.volumes_dir`` are ever deleted.
    """
    current = {r["case_id"] for r in rows if r.get("kind") == "image" and r.get("status") == "ingested"}
    removed = 0
    volumes = ws.volumes_dir.resolve()
    for key, prev in previous.items():
        path = prev.get("volume_path")
        if prev.get("status") != "ingested" or not path or key in current:
            continue
        store = Path(path)
        if store.resolve().parent == volumes and store.is_dir():
            shutil.rmtree(store, ignore_errors=True)
            removed += 1
            log.info("removed stale volume store %s (case no longer ingested)", store)
    return removed


def file_quarantine(catalog: Catalog, run_id: str) -> list[dict[str, Any]]:
    return [
        {
            "path": h["path"],
            "series_uid": h.get("series_uid"),
            "case_id": None,
            "reason": h["reason"],
            "message": h["message"],
            "run_id": h.get("run_id", run_id),
        }
        for h in catalog.file_headers("quarantined")
    ]


def studies_of(rows: list[dict[str, Any]], run_id: str) -> list[dict[str, Any]]:
    studies: dict[str, dict[str, Any]] = {}
    for r in rows:
        key = r.get("study_key")
        if not key:
            continue
        s = studies.setdefault(
            key, {"study_key": key, "patient_key": r.get("patient_key"), "n_series": 0, "run_id": run_id}
        )
        s["n_series"] += 1
    return sorted(studies.values(), key=lambda s: s["study_key"])
