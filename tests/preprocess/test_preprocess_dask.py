"""The preprocess stage on a 2-process LocalCluster gives exactly the sequential result."""

from __future__ import annotations

import logging
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from distributed import Client, LocalCluster
from preprocess_synthetic import synthetic_case

from medseg.config import MedsegConfig
from medseg.io.case_arrays import read_foreground_locations
from medseg.io.volume_store import read_case, write_case
from medseg.preprocess.fingerprint import Fingerprint
from medseg.preprocess.run import run_preprocess
from medseg.workspace import Workspace


@pytest.fixture(scope="module")
def client() -> Iterator[Client]:
    with (
        LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            dashboard_address=":0",
            silence_logs=logging.ERROR,
        ) as cluster,
        Client(cluster) as c,
    ):
        yield c


def _populate(ws: Workspace) -> None:
    for i, (spacing, modality) in enumerate(
        [((2.0, 1.0, 1.0), "CT"), ((2.5, 0.9, 0.9), "CT"), ((2.0, 1.1, 1.1), "CT"), ((3.0, 1.0, 1.0), "CT")]
    ):
        write_case(
            ws.volume_path(f"c{i}"), synthetic_case(f"c{i}", spacing=spacing, modality=modality, seed=i)
        )


def test_dask_and_sequential_give_identical_outputs(
    tmp_path: Path, cfg: MedsegConfig, client: Client
) -> None:
    seq, par = Workspace.at(tmp_path / "seq").ensure(), Workspace.at(tmp_path / "par").ensure()
    _populate(seq)
    shutil.copytree(seq.volumes_dir, par.volumes_dir, dirs_exist_ok=True)
    s_seq = run_preprocess(seq, cfg, None)
    progress: list[tuple[int, int]] = []
    s_par = run_preprocess(par, cfg, client, progress=lambda d, t: progress.append((d, t)))
    assert s_par.cases_processed == s_seq.cases_processed == 4 and s_par.failed == []
    assert s_par.plan_hash == s_seq.plan_hash
    assert progress[-1] == (4, 4)
    assert Fingerprint.load(seq.fingerprint_path) == Fingerprint.load(par.fingerprint_path)
    assert seq.splits_path.read_text() == par.splits_path.read_text()
    for i in range(4):
        a = read_case(seq.preprocessed_case_path(f"c{i}"))
        b = read_case(par.preprocessed_case_path(f"c{i}"))
        np.testing.assert_array_equal(a.image, b.image)
        np.testing.assert_array_equal(a.labels["gt"], b.labels["gt"])
        assert a.geometry == b.geometry and a.source == b.source
        fa = read_foreground_locations(seq.preprocessed_case_path(f"c{i}"))
        fb = read_foreground_locations(par.preprocessed_case_path(f"c{i}"))
        assert fa.keys() == fb.keys() and all(np.array_equal(fa[k], fb[k]) for k in fa)
    assert run_preprocess(par, cfg, client).cases_skipped == 4


def test_dask_failing_case_is_reported(tmp_path: Path, cfg: MedsegConfig, client: Client) -> None:
    ws = Workspace.at(tmp_path / "ws").ensure()
    _populate(ws)
    for p in (ws.volume_path("c2") / "labels" / "gt" / "0").rglob("*"):
        if p.is_file() and p.name != "zarr.json":
            p.write_bytes(b"garbage")
    s = run_preprocess(ws, cfg, client)
    assert s.cases_processed == 3 and [f.case_id for f in s.failed] == ["c2"]
    assert s.failed[0].error
