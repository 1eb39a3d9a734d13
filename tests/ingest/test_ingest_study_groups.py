"""One study group planned and built from its catalog rows (medseg.ingest.study_groups), and sorted
into cases to build, unchanged cases and cases a killed run already finished (resumed)."""

from __future__ import annotations

import pickle
import shutil
from pathlib import Path

from small_study import headers_of, small_study

from medseg.ingest.study_groups import GroupContext, GroupJob, classify, plan_and_build, plan_and_build_pickled
from medseg.io.catalog import Catalog
from medseg.io.volume_store import is_complete
from medseg.workspace import Workspace

KEY = "study-groups-secret"


def test_a_group_is_built_then_unchanged_or_resumed_and_rebuilt_without_its_store(tmp_path: Path) -> None:
    study = small_study(tmp_path / "src")
    ws = Workspace.at(tmp_path / "ws")
    catalog = Catalog(ws.catalog_path)
    catalog.upsert_files(headers_of(tmp_path / "src", KEY), "run1")
    ctx = GroupContext(workspace_root=str(ws.root), secret=KEY, roots=[str(tmp_path / "src")], orphans=[])
    job = GroupJob(previous={}, rows=catalog.file_header_rows())
    assert job.n_files == 6

    group = plan_and_build(job, ctx)
    (pc,) = group.to_build
    cid = pc.job.case_id
    assert not group.unchanged and not group.resumed
    res = group.results[cid]
    assert res["ok"] and res["has_labels"] and res["label_names"] == {1: "liver"}
    assert res["label_series_uids"] == [study.seg_uid]
    assert is_complete(Path(pc.job.volume_path))

    ingested = {cid: {"status": "ingested", "content_hash": pc.content_hash}}
    unchanged = classify(group.plan, ingested, KEY)
    assert (unchanged.unchanged, unchanged.resumed, unchanged.to_build) == ([pc], [], [])
    stale = {cid: {"status": "ingested", "content_hash": "another"}}
    resumed = classify(group.plan, stale, KEY)  # the store holds this exact content: a killed run built it
    assert (resumed.unchanged, resumed.resumed, resumed.to_build) == ([], [pc], [])
    assert resumed.results[cid]["ok"] and resumed.results[cid]["label_series_uids"] == [study.seg_uid]
    assert classify(group.plan, stale, "another-key").to_build == [pc]  # keyed label references differ

    shutil.rmtree(pc.job.volume_path)
    assert classify(group.plan, ingested, KEY).to_build == [pc]
    blob = pickle.dumps((ctx, [GroupJob(previous=ingested, rows=job.rows)]))
    (again,) = pickle.loads(plan_and_build_pickled(blob))  # as a Dask task runs it
    assert [p.job.case_id for p in again.to_build] == [cid] and again.results[cid]["ok"]
    assert is_complete(Path(pc.job.volume_path))
