"""Process hygiene: ``kill -9`` of ``medseg ingest`` takes its Prefect server and Dask workers along;
scratch file lists a killed run left are removed by the next run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from dicom_factory import ct_slices, write

from medseg.config import IngestConfig
from medseg.ingest.run import ingest
from medseg.workspace import Workspace


def _alive(procs: dict[int, float]) -> list[str]:
    """The recorded processes (pid -> create time) still running (zombies have exited)."""
    out = []
    for pid, created in procs.items():
        try:
            p = psutil.Process(pid)
            if p.create_time() == created and p.status() != psutil.STATUS_ZOMBIE:
                out.append(f"{pid} {' '.join(p.cmdline())[:120]}")
        except psutil.Error:
            continue
    return out


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_kill_9_of_the_cli_mid_ingest_leaves_no_child_alive(tmp_path: Path) -> None:
    src = tmp_path / "archive"
    for k in range(30):
        write(ct_slices(n=12, rows=64, cols=64, seed=k)[0], src / f"s{k:02d}")
    ws = tmp_path / "ws"
    medseg = Path(sys.executable).parent / "medseg"
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect"), "PREFECT_API_URL": ""}
    env.pop("PREFECT_API_URL")
    proc = subprocess.Popen([str(medseg), "ingest", str(src), "--workspace", str(ws)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    seen: dict[int, float] = {}
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None:
            for child in psutil.Process(proc.pid).children(recursive=True):
                try:
                    seen.setdefault(child.pid, child.create_time())
                except psutil.Error:
                    continue
            if (ws / "catalog.sqlite").exists() and len(seen) >= 4:  # server, fork server, workers: ingesting
                break
            time.sleep(0.05)
        assert proc.poll() is None, "ingest ended before it could be killed"
        assert (ws / "catalog.sqlite").exists(), f"ingest never started (children: {_alive(seen)})"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        end = time.monotonic() + 10  # the explicit liveness bound of the issue
        while _alive(seen) and time.monotonic() < end:
            time.sleep(0.1)
        assert _alive(seen) == []
    finally:
        if proc.poll() is None:
            proc.kill()
        for pid, created in seen.items():  # never leave a test's processes behind, whatever failed
            try:
                p = psutil.Process(pid)
                if p.create_time() == created:
                    p.kill()
            except psutil.Error:
                continue


def test_scratch_lists_of_a_killed_run_are_removed_at_the_next_start(tmp_path: Path) -> None:
    write(ct_slices(n=3, seed=1)[0], tmp_path / "src")
    ws = Workspace.at(tmp_path / "ws").ensure()
    left = [ws.root / ".scan-20260101T000000-abcdef.pkl", ws.root / ".todo-20260101T000000-abcdef.pkl"]
    for p in left:
        p.write_bytes(b"/archive/PATIENT^NAME/...")
    ingest([tmp_path / "src"], ws, IngestConfig(deid_secret="test-secret-123"))
    assert [p for p in left if p.exists()] == []
    assert list(ws.root.glob(".scan-*")) + list(ws.root.glob(".todo-*")) == []
