"""Turn the catalog's file headers into case jobs, label links, series rows and quarantine entries.

Pure bookkeeping on header dicts (no pixel I/O), run in the orchestrator after header reading:

* image headers are grouped by SeriesInstanceUID and assembled into stacks (:mod:`.stacks`);
* stacks described as masks are linked to the same-grid image stack of their study (:mod:`.masks`);
* DICOM SEG and RTSTRUCT files are linked to the image stacks they reference (by
  SeriesInstanceUID, narrowed by referenced SOPInstanceUIDs when the series was split into several
  stacks; else by SOPInstanceUIDs; an RTSTRUCT finally by its FrameOfReferenceUID when exactly one
  stack has it);
* NIfTI/NRRD files and MSD / nnU-Net dataset folders are paired into cases by
  :mod:`.volume_file_cases`;
* every valid, non-mask stack becomes a :class:`~medseg.ingest.build.CaseJob` whose
  ``content_hash`` covers its instances, its label sources and :data:`BUILD_VERSION`.
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medseg.deid import keyed_hash
from medseg.ingest.build import CaseJob, LabelSource
from medseg.ingest.channels import ChannelPlan, RuleTuple, apply_file_channels, plan_channels
from medseg.ingest.masks import is_mask_candidate, pick_target, same_grid
from medseg.ingest.stacks import Stack, assemble_series
from medseg.ingest.volume_file_cases import OrphanLabel, plan_volume_files
from medseg.io.reasons import Reason
from medseg.workspace import Workspace

#: Bump when the way volumes/labels are built changes: every case is rebuilt once.
BUILD_VERSION = 3  # 3: stores keep keyed stand-ins of UIDs and paths
#: kind -> (series key prefix, row modality, unreferenced reason, what it is called in messages)
_REFERENCING = {
    "seg": ("seg_", "SEG", Reason.SEG_UNREFERENCED, "DICOM SEG"),
    "rtstruct": ("rts_", "RTSTRUCT", Reason.RTSTRUCT_UNREFERENCED, "RTSTRUCT"),
}


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
    file_series: dict[str, str] = field(default_factory=dict)  # NIfTI/NRRD path -> its series_uid ("file:...")
    orphans: list[OrphanLabel] = field(default_factory=list)  # unpaired label files (files group only)
    claims: dict[str, tuple[str, str]] = field(default_factory=dict)  # orphan path -> (reason or "", message)


def acquisition_source(info: dict[str, Any]) -> dict[str, str]:
    """The scanner descriptors a case's store keeps in ``source`` (``manufacturer``, ``model``, ``protocol``;
    absent from older headers and from NIfTI/NRRD cases), read by the drift report."""
    found = {"manufacturer": info.get("manufacturer"), "model": info.get("model_name"),
             "protocol": info.get("protocol")}
    return {k: str(v) for k, v in found.items() if v}


def case_id_for(secret: str, stack: Stack) -> str:
    """``keyed_hash(secret, SeriesInstanceUID, "case_")``; split series add their stack key."""
    value = stack.series_uid if not stack.stack_key else f"{stack.series_uid}/{stack.stack_key}"
    return keyed_hash(secret, value, prefix="case_")


def _stat_key(headers_by_path: dict[str, dict[str, Any]], path: str) -> list[Any]:
    h = headers_by_path.get(path, {})
    return [path, h.get("size"), h.get("mtime_ns")]


def stack_row(stack: Stack, case_id: str, status: str, kind: str = "image") -> dict[str, Any]:
    """The series-table row of a stack; a series grouped without UIDs carries reason ``missing_uids``
    as a warning (any status)."""
    g = stack.geometry
    warning = stack.info.get("uid_fallback")
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
        "reason": stack.reason.value if stack.reason else (Reason.MISSING_UIDS.value if warning else None),
        "message": stack.message or warning or None,
        "sop_uids": stack.sop_uids,
    }


def plan_ingest(
    headers: list[dict[str, Any]],
    ws: Workspace,
    secret: str,
    roots: list[str] | None = None,
    orphans: list[OrphanLabel] | None = None,
    channels: Sequence[RuleTuple] = (),
) -> IngestPlan:
    """Plan cases and bookkeeping from every ``status == "ok"`` header of the catalog.

    Args:
        headers: Header dicts (:mod:`medseg.ingest.headers`).
        ws: Workspace (volume paths).
        secret: De-identification key.
        roots: The ingest sources (absolute); NIfTI/NRRD case ids hash paths relative to them.
        orphans: NIfTI/NRRD label files without an image file (planned earlier); those on the grid of
            one of these DICOM image stacks become its label (see :func:`claim_orphans`).
        channels: ``ingest.channels`` rules ``(name, match, exclude)``: DICOM image stacks form
            multi-channel cases study by study (:func:`medseg.ingest.channels.plan_channels`).
    """
    plan = IngestPlan()
    by_path = {h["path"]: h for h in headers}
    by_path.update({o.path: {"size": o.stat[0], "mtime_ns": o.stat[1]} for o in orphans or []})
    images: dict[str, list[dict[str, Any]]] = defaultdict(list)
    referencing: list[dict[str, Any]] = []  # SEG + RTSTRUCT files
    kept_sop: dict[str, str] = {}
    files: list[dict[str, Any]] = []
    for h in headers:
        kind = h.get("kind")
        if kind in _REFERENCING:
            if h["sop_uid"] in kept_sop:
                plan.quarantine.append(
                    {
                        "path": h["path"],
                        "series_uid": h["series_uid"],
                        "case_id": None,
                        "reason": Reason.DUPLICATE_INSTANCE.value,
                        "message": f"{h['path']}: same SOPInstanceUID as {kept_sop[h['sop_uid']]} (kept that copy)",
                    }
                )
                continue
            kept_sop[h["sop_uid"]] = h["path"]
            referencing.append(h)
        elif kind == "image":
            images[h["series_uid"]].append(h)
        elif kind in ("volume", "dataset"):
            files.append(h)

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

    ref_series = _link_referencing(referencing, targets, series_reason, labels, plan)
    claim_orphans(orphans or [], targets, labels, plan, secret)
    chans = plan_channels(targets, channels, labels) if channels else ChannelPlan()

    mask_ids = {id(m) for m in masks} | chans.not_cases
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
                channel_names=chans.names.get(id(s), ()),
                extra_channels=chans.extra.get(id(s), []),
                source={
                    "series_uid": s.series_uid,
                    "study_key": s.info.get("study_key"),
                    "patient_key": s.info.get("patient_key"),
                    "modality": s.info.get("modality"),
                    **acquisition_source(s.info),
                    "n_instances": len(s.paths),
                    "stack_key": s.stack_key,
                },
            )
            digest = content_hash(job, by_path)
            job.source["content_hash"] = digest  # kept in the store: lets a re-run resume a killed run
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
    for c, c_status, why, c_note in chans.rows:
        row = stack_row(c, case_id_for(secret, c), c_status)
        row.update(reason=why.value if why else None, message=c_note)
        plan.series_rows.append(row)
        plan.quarantine.extend({"path": p, "series_uid": c.series_uid, "case_id": row["case_id"],
                                "reason": why.value, "message": c_note} for p in c.paths if why is not None)
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
    for (kind, uid), hs in sorted(ref_series.items()):
        prefix, modality, unreferenced, _ = _REFERENCING[kind]
        linked = any(h.get("_linked") for h in hs)
        first = hs[0]
        key = keyed_hash(secret, uid, prefix=prefix)
        plan.series_rows.append(
            {
                "series_key": key,
                "case_id": key,
                "series_uid": uid,
                "stack_key": "",
                "kind": kind,
                "study_key": first.get("study_key"),
                "patient_key": first.get("patient_key"),
                "modality": modality,
                "description": first.get("description"),
                "n_instances": len(hs),
                "status": "label_source" if linked else "quarantined",
                "reason": None if linked else unreferenced.value,
                "sop_uids": sorted(h["sop_uid"] for h in hs),
            }
        )
    file_plan = plan_volume_files(files, ws, secret, roots or [])
    if channels:
        for st, cid, msg in apply_file_channels(file_plan, files, channels):
            plan.series_rows.append({**stack_row(st, cid, "quarantined"), "reason": Reason.MISSING_CHANNEL.value,
                                     "message": msg})
            plan.quarantine.append({"path": st.paths[0] if st.paths else "", "series_uid": st.series_uid,
                                    "case_id": cid, "reason": Reason.MISSING_CHANNEL.value, "message": msg})
    for job, stack in file_plan.cases:
        digest = content_hash(job, by_path)
        job.source["content_hash"] = digest
        plan.cases.append(PlannedCase(job=job, stack=stack, content_hash=digest))
    plan.series_rows.extend(file_plan.series_rows)
    plan.quarantine.extend(file_plan.quarantine)
    plan.file_series = file_plan.file_series
    plan.orphans = file_plan.orphans
    return plan


def claim_orphans(
    orphans: list[OrphanLabel],
    targets: list[Stack],
    labels: dict[int, list[LabelSource]],
    plan: IngestPlan,
    secret: str,
) -> None:
    """Link NIfTI/NRRD label files to the DICOM image stack on their grid (e.g. dcmqi/Slicer labelmaps).

    A label file is claimed by the one stack whose shape and geometry it shares (the closest folder
    wins when several stacks share the grid); a stack takes at most one label file (seg > label > mask >
    others, then path order), the other candidates are reported as ``label_ambiguous``.
    """
    chosen: dict[int, list[OrphanLabel]] = defaultdict(list)
    by_id = {id(t): t for t in targets}
    for orphan in orphans:
        cands = [t for t in targets if t.geometry is not None and same_grid(t.geometry, t.shape, orphan.geometry,
                                                                             orphan.shape)]
        if len(cands) > 1:
            parent = Path(orphan.path).parent
            scores = [_shared_prefix(parent, Path(t.paths[0]).parent) for t in cands]
            cands = [t for t, sc in zip(cands, scores, strict=True) if sc == max(scores)]
        if len(cands) == 1:
            chosen[id(cands[0])].append(orphan)
        elif cands:
            plan.claims[orphan.path] = (
                Reason.LABEL_UNMATCHED.value,
                f"{orphan.path}: {len(cands)} DICOM series share its grid and folder distance "
                f"({', '.join(sorted(str(t.info.get('description') or t.series_uid) for t in cands))}); "
                "put the label file next to the series it labels",
            )
    for tid, found in chosen.items():
        target = by_id[tid]
        cid = case_id_for(secret, target)
        found.sort(key=lambda o: (o.priority, o.path))
        labels[tid].append(found[0].source)
        plan.claims[found[0].path] = ("", f"labels {cid}")
        for other in found[1:]:
            plan.claims[other.path] = (
                Reason.LABEL_AMBIGUOUS.value,
                f"{other.path}: DICOM series of case {cid} is already labeled by {found[0].path} "
                "(medseg uses one label file per image: seg > label > mask > others)",
            )


def _shared_prefix(a: Path, b: Path) -> int:
    n = 0
    for x, y in zip(a.parts, b.parts, strict=False):
        if x != y:
            break
        n += 1
    return n


def content_hash(job: CaseJob, by_path: dict[str, dict[str, Any]]) -> str:
    """Hash of everything a case's store depends on: instances/files (path, size, mtime), labels, version."""
    image_paths = [job.image_file] if job.image_file else sorted({f.path for f in job.frames})
    stat = [_stat_key(by_path, p) for p in image_paths]
    lab = [
        [
            ls.kind,
            ls.series_uid,
            ls.path,
            [_stat_key(by_path, f.path) for f in ls.frames] if ls.frames else _stat_key(by_path, ls.path),
            list(ls.names),
            ls.description,
        ]
        for ls in job.labels
    ]
    frames = [(f.path, f.frame) for f in job.frames] or [(job.image_file, job.channel)]
    parts: list[Any] = [BUILD_VERSION, job.case_id, frames, stat, lab]
    if job.channel_names:  # multi-channel cases only: single-channel hashes stay as they were
        parts.append([list(job.channel_names)] + [
            [c.name, c.series_uid, [(f.path, f.frame, _stat_key(by_path, f.path)) for f in c.frames]]
            + ([c.image_file, _stat_key(by_path, c.image_file)] if c.image_file not in ("", job.image_file) else [])
            for c in job.extra_channels
        ])
    return hashlib.sha256(json.dumps(parts, default=str).encode()).hexdigest()


def _link_referencing(
    referencing: list[dict[str, Any]],
    targets: list[Stack],
    series_reason: dict[str, str],
    labels: dict[int, list[LabelSource]],
    plan: IngestPlan,
) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """Link SEG / RTSTRUCT headers to their image stacks; quarantine those that reference nothing ingestible.

    Returns:
        ``{(kind, SeriesInstanceUID): [headers]}`` (``h["_linked"]`` tells whether each was linked).
    """
    by_series: dict[str, list[Stack]] = defaultdict(list)
    for s in targets:
        by_series[s.series_uid].append(s)
    out: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for h in referencing:
        kind = h["kind"]
        _, _, unreferenced, what = _REFERENCING[kind]
        out[(kind, h["series_uid"])].append(h)
        found = _seg_targets(h, by_series, targets)
        if not found and kind == "rtstruct":
            fors = set(h.get("ref_for_uids") or [])
            same_for = [t for t in targets if fors and t.info.get("for_uid") in fors]
            found = same_for if len(same_for) == 1 else []
        if not found:
            refs = h.get("ref_series_uids") or []
            why = "; ".join(series_reason[r] for r in refs if r in series_reason)
            msg = f"{h['path']}: {what} references series {', '.join(refs) or '(none)'} which " + (
                f"was not ingested ({why})" if why else "is not in the ingested sources"
            )
            plan.quarantine.append(
                {
                    "path": h["path"],
                    "series_uid": h["series_uid"],
                    "case_id": None,
                    "reason": unreferenced.value,
                    "message": msg,
                }
            )
            h["_linked"] = False
            continue
        h["_linked"] = True
        for t in found:
            labels[id(t)].append(LabelSource(kind=kind, series_uid=h["series_uid"], path=h["path"]))
    return out


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
