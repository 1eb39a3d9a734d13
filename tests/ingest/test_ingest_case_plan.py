"""Case jobs from header dicts (medseg.ingest.case_plan): one case per valid image stack with a keyed
id, SEG files linked to the stack they reference or quarantined, and a content hash over the inputs."""

from __future__ import annotations

from pathlib import Path

from small_study import headers_of, small_study

from medseg.deid import keyed_hash
from medseg.ingest.case_plan import case_id_for, content_hash, plan_ingest, stack_row
from medseg.workspace import Workspace

KEY = "case-plan-secret"


def test_a_series_with_its_seg_becomes_one_case_and_a_stray_seg_is_quarantined(tmp_path: Path) -> None:
    study = small_study(tmp_path / "src")
    headers = headers_of(tmp_path / "src", KEY)
    ws = Workspace.at(tmp_path / "ws")

    plan = plan_ingest(headers, ws, KEY, [str(tmp_path / "src")])

    (pc,) = plan.cases
    assert pc.job.case_id == case_id_for(KEY, pc.stack) == keyed_hash(KEY, study.series_uid, prefix="case_")
    assert pc.job.volume_path == str(ws.volume_path(pc.job.case_id))
    assert pc.stack.shape == (4, 8, 10) and pc.stack.paths == [str(p) for p in study.slices]
    assert [(ls.kind, ls.series_uid, ls.path) for ls in pc.job.labels] == [("seg", study.seg_uid, str(study.seg))]
    assert [(q["path"], q["reason"]) for q in plan.quarantine] == [(str(study.stray), "seg_unreferenced")]
    assert sorted((r["series_uid"], r["kind"], r["status"]) for r in plan.series_rows) == sorted(
        [(study.seg_uid, "seg", "label_source"), (study.stray_uid, "seg", "quarantined")]
    )
    row = stack_row(pc.stack, pc.job.case_id, "ingested")
    assert (row["kind"], row["n_instances"], row["shape"], row["status"]) == ("image", 4, [4, 8, 10], "ingested")


def test_the_content_hash_follows_the_files_and_the_labels(tmp_path: Path) -> None:
    study = small_study(tmp_path / "src")
    headers = headers_of(tmp_path / "src", KEY)
    ws = Workspace.at(tmp_path / "ws")
    (pc,) = plan_ingest(headers, ws, KEY).cases
    by_path = {h["path"]: h for h in headers}
    assert pc.content_hash == content_hash(pc.job, by_path)
    assert plan_ingest(headers, ws, KEY).cases[0].content_hash == pc.content_hash  # deterministic

    touched = {**by_path, str(study.slices[2]): {**by_path[str(study.slices[2])], "mtime_ns": 1}}
    assert content_hash(pc.job, touched) != pc.content_hash  # a slice changed
    seg_touched = {**by_path, str(study.seg): {**by_path[str(study.seg)], "size": 1}}
    assert content_hash(pc.job, seg_touched) != pc.content_hash  # its SEG changed
    without_seg = [h for h in headers if h["path"] != str(study.seg)]
    (unlabeled,) = plan_ingest(without_seg, ws, KEY).cases
    assert unlabeled.job.labels == [] and unlabeled.content_hash != pc.content_hash
