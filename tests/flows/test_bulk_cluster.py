"""Bulk flow on a real ``dask scheduler`` + 2 ``dask worker`` processes (127.0.0.1): SIGKILL the flow
process part-way, rerun it: completed batches are skipped (none runs twice) and the catalog equals
that of an uninterrupted ingest."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "preprocess"))  # the shared dask_processes helper
from catalog_snapshot import catalog_snapshot  # noqa: E402
from dask_processes import process_cluster  # noqa: E402

from medseg.config import MedsegConfig  # noqa: E402
from medseg.config_loader import config_dict  # noqa: E402
from medseg.ingest.run import ingest  # noqa: E402
from medseg.ops.bulk import BatchRecord, load_manifest  # noqa: E402
from medseg.workspace import Workspace  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
FILES_PER_TASK = 12

#: the flow process: one batch task at a time, each slowed down so the test can kill it part-way
_CHILD = """
import json, sys, time
import medseg.tasks.bulk
from medseg.ops import bulk

real = bulk.index_batch
def slow(*args, **kwargs):
    rec = real(*args, **kwargs)
    time.sleep(float(sys.argv[2]))
    return rec
medseg.tasks.bulk.index_batch = slow
from medseg.flows.bulk import bulk_flow
result = bulk_flow(config=json.loads(open(sys.argv[1]).read()), run_id=sys.argv[3])
print("RESULT " + json.dumps(result))
"""


def _env(tmp: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(PYTHONPATH=str(REPO), PREFECT_HOME=str(tmp / "prefect-home"), PREFECT_SERVER_ANALYTICS_ENABLED="false",
               PREFECT_UI_ENABLED="false", PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="90")
    env.pop("PREFECT_API_URL", None)
    return env


def _run_flow(cfg_file: Path, tmp: Path, delay: float, run_id: str) -> subprocess.Popen[str]:
    """The flow in a process group of its own: with its ephemeral Prefect server (a child process)."""
    return subprocess.Popen([sys.executable, "-c", _CHILD, str(cfg_file), str(delay), run_id], cwd=REPO,
                            env=_env(tmp), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)


def _kill_group(proc: subprocess.Popen[str]) -> None:
    """SIGKILL the flow and its ephemeral server, as a crash of the machine would (no orphan server left)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)


def _records(folder: Path) -> dict[int, str]:
    return {int(p.stem.split("-")[1]): p.read_text() for p in sorted(folder.glob("batch-*.json"))}


@pytest.mark.slow
def test_killed_bulk_flow_resumes_without_redoing_batches(tmp_path: Path) -> None:
    from medseg.demo.archive import generate_demo_archive

    archive = tmp_path / "archive"
    generate_demo_archive(archive, cases=3, seed=21)
    ref = Workspace.at(tmp_path / "ref")
    with process_cluster(tmp_path / "cluster") as cluster:
        cfg = MedsegConfig.model_validate({
            "workspace": str(tmp_path / "ws"), "sources": [str(archive)],
            "dask": {"address": cluster.address},
            "ingest": {"deid_secret": "bulk-secret-123", "files_per_batch": 4},
            "ops": {"bulk_files_per_task": FILES_PER_TASK, "bulk_tasks_in_flight": 1, "retry_backoff_s": 0},
        })
        ingest([archive], ref, cfg.ingest)  # reference: one uninterrupted plain ingest
        cfg_file = tmp_path / "cfg.json"
        cfg_file.write_text(json.dumps(config_dict(cfg, reveal_key=True)))
        ws = Workspace.at(cfg.workspace)

        proc = _run_flow(cfg_file, tmp_path, delay=0.6, run_id="run-1")
        try:
            deadline = time.time() + 120
            while time.time() < deadline:
                folders = list((ws.root / "bulk").glob("*/"))
                if folders and len(_records(folders[0])) >= 2:
                    break
                assert proc.poll() is None, f"flow ended before the kill:\n{proc.stdout.read() if proc.stdout else ''}"
                time.sleep(0.05)
            else:
                pytest.fail("no batch record appeared within 120 s")
            _kill_group(proc)
            proc.wait(timeout=30)
        finally:
            _kill_group(proc)
        folder = folders[0]
        manifest = load_manifest(ws, folder.name)
        before = _records(folder)
        assert 2 <= len(before) < manifest.n_batches, "the kill must land part-way"

        rerun = _run_flow(cfg_file, tmp_path, delay=0.0, run_id="run-2")
        try:
            out, _ = rerun.communicate(timeout=300)
        finally:
            _kill_group(rerun)  # a server its exit left behind
        assert rerun.returncode == 0, out[-3000:]
    result: dict[str, Any] = json.loads(next(ln for ln in out.splitlines() if ln.startswith("RESULT "))[7:])
    after = _records(folder)
    # completed batches were skipped, the others ran once: every batch has exactly one record
    assert result["batches_skipped"] == sorted(before)
    assert sorted(result["batches_run"]) == sorted(set(range(manifest.n_batches)) - set(before))
    assert sorted(after) == list(range(manifest.n_batches))
    assert all(after[b] == before[b] for b in before)  # records of run 1 untouched
    recs = [BatchRecord.model_validate_json(t) for t in after.values()]
    assert {r.run_id for r in recs} == {"run-1", "run-2"}
    # no header read twice: files indexed by the batches + those a killed batch had committed = all files
    assert sum(r.indexed for r in recs) + sum(r.already_indexed for r in recs) == manifest.n_files
    assert sum(r.already_indexed for r in recs) < FILES_PER_TASK  # at most the one interrupted batch
    assert {r.host for r in recs} and result["workers"] == 2
    assert result["assemble"]["cases"] == 3 and result["assemble"]["files_indexed"] == 0
    assert catalog_snapshot(ws) == catalog_snapshot(ref)
