"""Crash safety: SIGKILL an ingest part-way, re-run it, and get the catalog of an uninterrupted run."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from catalog_snapshot import catalog_snapshot
from dicom_factory import ct_slices, seg_for, write

from medseg.config import IngestConfig
from medseg.ingest.run import clean_stale_stores, ingest
from medseg.io.volume_store import is_complete, read_case
from medseg.workspace import Workspace

SECRET = "crash-secret-123"
CFG = IngestConfig(deid_secret=SECRET, files_per_batch=16)
N_SERIES = 40

_CHILD = """
import sys, time
from pathlib import Path
from medseg.config import IngestConfig
from medseg.ingest.run import ingest
from medseg.workspace import Workspace

src, ws, log_path, slow_phase, delay = sys.argv[1:6]
log = open(log_path, "a", buffering=1)

def progress(phase, done, total):
    log.write(f"{phase} {done} {total}\\n")
    if phase == slow_phase:
        time.sleep(float(delay))

ingest([Path(src)], Workspace.at(ws), IngestConfig(deid_secret=sys.argv[6], files_per_batch=16), progress=progress)
log.write("finished\\n")
"""


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """40 CT series (one with a SEG), a series with a missing slice and two junk files."""
    src = tmp_path_factory.mktemp("crash") / "archive"
    for k in range(N_SERIES):
        dss, _ = ct_slices(n=8, rows=48, cols=48, seed=k, patient_id=f"P{k % 7}")
        write(dss, src / f"p{k % 7}" / f"s{k:02d}")
        if k == 3:
            masks = np.zeros((8, 48, 48, 1), bool)
            masks[2:5, 10:20, 10:30] = True
            seg_for(dss, masks).save_as(src / "p3" / "seg.dcm")
    gap, _ = ct_slices(n=6, seed=99)
    write([d for i, d in enumerate(gap) if i != 3], src / "gap")
    (src / "notes.txt").write_text("not dicom")
    (src / "gap" / "junk.bin").write_bytes(os.urandom(200))
    return src


def _visible_stores(ws: Workspace) -> list[Path]:
    return sorted(p for p in ws.volumes_dir.iterdir() if not p.name.startswith("."))


def _kill_part_way(archive: Path, ws: Workspace, log: Path, slow_phase: str, ready: Any) -> None:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    proc = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(archive), str(ws.root), str(log), slow_phase, "0.08", SECRET], env=env
    )
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            text = log.read_text() if log.exists() else ""
            if "finished" in text or proc.poll() is not None:
                pytest.fail(f"ingest finished before it could be killed:\n{text[-500:]}")
            if ready(text):
                break
            time.sleep(0.02)
        else:
            pytest.fail("ingest never reached the kill point")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()


@pytest.fixture(scope="module")
def reference(archive: Path, tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    ws = Workspace.at(tmp_path_factory.mktemp("ref") / "ws")
    s = ingest([archive], ws, CFG)
    assert s.cases == N_SERIES and s.labeled_cases == 1
    return ws


def _assert_same_as_reference(ws: Workspace, reference: Workspace) -> None:
    assert catalog_snapshot(ws) == catalog_snapshot(reference)
    stores = _visible_stores(ws)
    assert [p.name for p in stores] == [p.name for p in _visible_stores(reference)]
    assert not [p for p in ws.volumes_dir.iterdir() if ".partial-" in p.name or ".old-" in p.name]
    for p in stores:
        a, b = read_case(p), read_case(reference.volumes_dir / p.name)
        np.testing.assert_array_equal(a.image, b.image)
        assert a.labels.keys() == b.labels.keys() and a.label_names == b.label_names
        for name in a.labels:
            np.testing.assert_array_equal(a.labels[name], b.labels[name])


def _stores_exist(n: int, ws: Workspace) -> Any:
    def ready(_: str) -> bool:
        return ws.volumes_dir.is_dir() and len(_visible_stores(ws)) >= n

    return ready


def test_kill_while_writing_volumes_then_rerun(archive: Path, reference: Workspace, tmp_path: Path) -> None:
    ws = Workspace.at(tmp_path / "ws")
    _kill_part_way(archive, ws, tmp_path / "log.txt", "volumes", _stores_exist(6, ws))
    killed = _visible_stores(ws)
    assert 6 <= len(killed) < N_SERIES
    assert all(is_complete(p) for p in killed)  # readers never see a half-written store
    with sqlite3.connect(ws.catalog_path) as con:
        assert con.execute("SELECT COUNT(*) FROM series").fetchone()[0] == 0  # state is replaced at the end only
    (ws.volumes_dir / ".case_dead.zarr.partial-1234abcd").mkdir()  # what a kill mid-write leaves behind
    s = ingest([archive], ws, CFG)
    assert s.files_indexed == 0  # every header was committed before the kill
    assert s.series_resumed >= len(killed) - 1 and s.series_resumed + s.series_ingested == N_SERIES
    _assert_same_as_reference(ws, reference)


def test_kill_while_reading_headers_then_rerun(archive: Path, reference: Workspace, tmp_path: Path) -> None:
    ws = Workspace.at(tmp_path / "ws")

    def ready(text: str) -> bool:
        return any(line.startswith("headers ") and int(line.split()[1]) >= 64 for line in text.splitlines())

    _kill_part_way(archive, ws, tmp_path / "log.txt", "headers", ready)
    with sqlite3.connect(ws.catalog_path) as con:
        indexed = con.execute("SELECT COUNT(*) FROM files").fetchone()[0]
    total = sum(1 for p in archive.rglob("*") if p.is_file())
    assert 64 <= indexed < total and indexed % 16 == 0  # committed batch by batch
    s = ingest([archive], ws, CFG)
    assert s.files_indexed == total - indexed
    _assert_same_as_reference(ws, reference)
    again = ingest([archive], ws, CFG)
    assert (again.files_indexed, again.series_ingested, again.series_unchanged) == (0, 0, N_SERIES)
    _assert_same_as_reference(ws, reference)


def test_clean_stale_stores_removes_only_temporaries(tmp_path: Path) -> None:
    vol = tmp_path / "volumes"
    for name in ("case_a.zarr", ".case_a.zarr.partial-0a1b2c3d", ".case_b.zarr.old-99887766", ".keep"):
        (vol / name).mkdir(parents=True)
    assert clean_stale_stores(vol) == 2
    assert sorted(p.name for p in vol.iterdir()) == [".keep", "case_a.zarr"]
