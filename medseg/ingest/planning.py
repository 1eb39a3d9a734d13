"""Turn the catalog's file headers into case jobs, label links, series rows and quarantine entries.

Pure bookkeeping on header dicts (no pixel I/O), run in the orchestrator after header reading:

* image headers are grouped by SeriesInstanceUID and assembled into stacks (:mod:`.stacks`);
* stacks described as masks are linked to the same-grid image stack of their study (:mod:`.masks`);
* DICOM SEG files are linked to the image stacks they reference (by SeriesInstanceUID, narrowed
  by referenced SOPInstanceUIDs when the series was split into several stacks);
* every valid, non-mask stack becomes a :class:`~medseg.ingest.build.CaseJob` whose
  ``content_hash`` covers its instances, its label sources and :data:`BUILD_VERSION`.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from medseg.deid import keyed_hash
from medseg.ingest.build import CaseJob, LabelSource
from medseg.ingest.masks import is_mask_candidate, pick_target
from medseg.ingest.reasons import Reason
from medseg.ingest.stacks import Stack, assemble_series
from medseg.workspace import Workspace

#: Bump when the way volumes/labels are built changes: every case is rebuilt once.
BUILD_VERSION = 1


@dataclass
class PlannedCase:
    job: CaseJob
    stack: Stack
    content_hash: str


@dataclass
class IngestPlan:
    cases: list[PlannedCase] = field(default_factory=list)
    series_rows: list[dict[str, Any]] = field(default_factory=list)  # everything except planned cases
    quarantine: list[dict[str, Any]] = field(default_factory=list)


def case_id_for(secret: str, stack: Stack) -> str:
    """``keyed_hash(secret, SeriesInstanceUID, "case_")``; split series add their stack key."""
    value = stack.series_uid if not stack.stack_key else f"{stack.series_uid}/{stack.stack_key}"
    return keyed_hash(secret, value, prefix="case_")


def _stat_key(headers_by_path: dict[str, dict[str, Any]], path: str) -> list[Any]:
    h = headers_by_path.get(path, {})
    return [path, h.get("size"), h.get("mtime_ns")]


def stack_row(stack: Stack, case_id: str, status: str, kind: str = "image") -> dict[str, Any]:
    g = stack.geometry
    return {
        "series_key": case_id,
        "case_id": case_id,
        "series_uid": stack.series_uid,
        "stack_key": stack.stack_key,
        "kind": kind,
        "study_key": stack.info.get("study_key"),
        "patient_key": stack.info.get("patient_key"),
        "modality": stack.info.get("modality"),
        "description": stack.info.get("description"),
        "n_instances": len(stack.paths),
        "shape": list(stack.shape),
        "spacing": list(g.spacing) if g else None,
        "geometry": g.to_dict() if g else None,
        "status": status,
        "reason": stack.reason.value if stack.reason else None,
        "message": stack.message or None,
        "sop_uids": stack.sop_uids,
    }


def plan_ingest(headers: list[dict[str, Any]], ws: Workspace, secret: str) -> IngestPlan:
    """Plan cases and bookkeeping from every ``status == "ok"`` header of the catalog."""
    plan = IngestPlan()
    by_path = {h["path"]: h for h in headers}
    images: dict[str, list[dict[str, Any]]] = defaultdict(list)
    segs: list[dict[str, Any]] = []
    seg_kept: dict[str, str] = {}
    for h in headers:
        if h.get("kind") == "seg":
            if h["sop_uid"] in seg_kept:
                plan.quarantine.append(
                    {
                        "path": h["path"],
                        "series_uid": h["series_uid"],
                        "case_id": None,
                        "reason": Reason.DUPLICATE_INSTANCE.value,
                        "message": f"{h['path']}: same SOPInstanceUID as {seg_kept[h['sop_uid']]} (kept that copy)",
                    }
                )
                continue
            seg_kept[h["sop_uid"]] = h["path"]
            segs.append(h)
        elif h.get("kind") == "image":
            images[h["series_uid"]].append(h)

    stacks: list[Stack] = []
    series_reason: dict[str, str] = {}
    for uid in sorted(images):
        assembly = assemble_series(images[uid])
        for dup, kept in assembly.duplicate_files:
            plan.quarantine.append(
                {
                    "path": dup,
                    "series_uid": uid,
                    "case_id": None,
                    "reason": Reason.DUPLICATE_INSTANCE.value,
                    "message": f"{dup}: same SOPInstanceUID as {kept} (kept that copy)",
                }
            )
        stacks.extend(assembly.stacks)
        for st in assembly.stacks:
            if not st.ok:
                series_reason.setdefault(uid, f"{st.reason.value if st.reason else '?'}: {st.message}")

    valid = [s for s in stacks if s.ok]
    masks = [s for s in valid if is_mask_candidate(s)]
    targets = [s for s in valid if not is_mask_candidate(s)]
    labels: dict[int, list[LabelSource]] = defaultdict(list)  # id(stack) -> sources
    label_rows: list[tuple[Stack, str, str | None, str | None]] = []
    for m in masks:
        target = pick_target(m, targets)
        if target is None:
            msg = (
                f"{m.paths[0]} ...: mask series {m.info.get('description')!r} has no image series of the "
                "same study on the same grid to label"
            )
            m.reason, m.message = Reason.LABEL_UNMATCHED, msg
            label_rows.append((m, "quarantined", Reason.LABEL_UNMATCHED.value, msg))
            continue
        labels[id(target)].append(
            LabelSource(
                kind="mask",
                series_uid=m.series_uid,
                frames=tuple(m.frames),
                description=str(m.info.get("description") or ""),
            )
        )
        label_rows.append((m, "label_source", None, f"labels {case_id_for(secret, target)}"))

    by_series: dict[str, list[Stack]] = defaultdict(list)
    for s in targets:
        by_series[s.series_uid].append(s)
    seg_series: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for h in segs:
        seg_series[h["series_uid"]].append(h)
        found = _seg_targets(h, by_series, targets)
        if not found:
            refs = h.get("ref_series_uids") or []
            why = "; ".join(series_reason[r] for r in refs if r in series_reason)
            msg = f"{h['path']}: DICOM SEG references series {', '.join(refs) or '(none)'} which " + (
                f"was not ingested ({why})" if why else "is not in the ingested sources"
            )
            plan.quarantine.append(
                {
                    "path": h["path"],
                    "series_uid": h["series_uid"],
                    "case_id": None,
                    "reason": Reason.SEG_UNREFERENCED.value,
                    "message": msg,
                }
            )
            h["_linked"] = False
            continue
        h["_linked"] = True
        for t in found:
            labels[id(t)].append(LabelSource(kind="seg", series_uid=h["series_uid"], path=h["path"]))

    mask_ids = {id(m) for m in masks}
    for s in stacks:
        cid = case_id_for(secret, s)
        if id(s) in mask_ids:
            continue  # rows written below
        if s.ok:
            srcs = sorted(labels.get(id(s), []), key=lambda ls: (ls.kind, ls.path, ls.series_uid))
            job = CaseJob(
                case_id=cid,
                volume_path=str(ws.volume_path(cid)),
                frames=s.frames,
                geometry=s.geometry,  # type: ignore[arg-type]
                labels=srcs,
                source={
                    "series_uid": s.series_uid,
                    "study_key": s.info.get("study_key"),
                    "patient_key": s.info.get("patient_key"),
                    "modality": s.info.get("modality"),
                    "n_instances": len(s.paths),
                    "stack_key": s.stack_key,
                },
            )
            stat = [_stat_key(by_path, p) for p in s.paths]
            lab = [
                [
                    ls.kind,
                    ls.series_uid,
                    ls.path,
                    [_stat_key(by_path, f.path) for f in ls.frames] if ls.frames else _stat_key(by_path, ls.path),
                ]
                for ls in srcs
            ]
            digest = hashlib.sha256(
                json.dumps([BUILD_VERSION, cid, [(f.path, f.frame) for f in s.frames], stat, lab], default=str).encode()
            ).hexdigest()
            plan.cases.append(PlannedCase(job=job, stack=s, content_hash=digest))
        else:
            plan.series_rows.append(stack_row(s, cid, "quarantined"))
            if s.reason is not None and s.reason != Reason.LABEL_UNMATCHED:
                plan.quarantine.extend(
                    {
                        "path": p,
                        "series_uid": s.series_uid,
                        "case_id": cid,
                        "reason": s.reason.value,
                        "message": s.message,
                    }
                    for p in s.paths
                )
    for m, status, reason, note in label_rows:
        row = stack_row(m, case_id_for(secret, m), status, kind="mask")
        row.update(reason=reason, message=note)
        plan.series_rows.append(row)
        if status == "quarantined":
            plan.quarantine.extend(
                {
                    "path": p,
                    "series_uid": m.series_uid,
                    "case_id": row["case_id"],
                    "reason": reason,
                    "message": note,
                }
                for p in m.paths
            )
    for uid, hs in sorted(seg_series.items()):
        linked = any(h.get("_linked") for h in hs)
        first = hs[0]
        key = keyed_hash(secret, uid, prefix="seg_")
        plan.series_rows.append(
            {
                "series_key": key,
                "case_id": key,
                "series_uid": uid,
                "stack_key": "",
                "kind": "seg",
                "study_key": first.get("study_key"),
                "patient_key": first.get("patient_key"),
                "modality": "SEG",
                "description": first.get("description"),
                "n_instances": len(hs),
                "status": "label_source" if linked else "quarantined",
                "reason": None if linked else Reason.SEG_UNREFERENCED.value,
                "sop_uids": sorted(h["sop_uid"] for h in hs),
            }
        )
    return plan


def _seg_targets(h: dict[str, Any], by_series: dict[str, list[Stack]], targets: list[Stack]) -> list[Stack]:
    refs = set(h.get("ref_sop_uids") or [])
    found: list[Stack] = []
    for uid in h.get("ref_series_uids") or []:
        cands = by_series.get(uid, [])
        narrowed = [s for s in cands if refs & set(s.sop_uids)] if refs and len(cands) > 1 else cands
        found.extend(narrowed)
    if not found and refs:  # no ReferencedSeriesSequence: look the instances up
        found = [s for s in targets if refs & set(s.sop_uids)]
    return found
