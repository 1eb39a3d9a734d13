"""Inference fanned out over Dask workers (``infer.workers``, ``dask.address``) against in-process inference.

* the stage's own LocalCluster of 2 workers predicts the cases on both workers, and every output
  file equals, byte for byte, that of the one-process run (one case at a time on one torch thread,
  as on each worker); a broken case fails alone, by its id;
* on a standing cluster (``dask.address``) every worker loads the model once for all its cases and
  all runs, and a rerun predicts only what is missing;
* a worker killed (SIGKILL) mid-run: its cases run on the other worker, no half-written output is
  taken for a finished one, and the outputs equal the undisturbed run's.
"""

from __future__ import annotations

import os
import shutil
import signal
from pathlib import Path

import numpy as np
import phantom_data as phantom
import pytest
import torch

from medseg.config import DaskConfig, MedsegConfig, ModelFamily
from medseg.geometry import Geometry
from medseg.inference import model_cache
from medseg.inference.layout import INFER_WORKER_MODULES
from medseg.io.volume_store import CaseVolume, is_complete, read_case, write_case
from medseg.runtime.cluster import dask_client
from medseg.stages.infer import run_infer_stage
from medseg.training.bundle import save_bundle
from medseg.training.network import build_segmenter
from medseg.workspace import Workspace

GEOMETRY = Geometry.create((3.0, 1.2, 1.0), (-30.0, 12.5, 100.0))
CASES = [f"case{i:03d}" for i in range(5)]


def _workspace(root: Path, shape: tuple[int, int, int] = (24, 60, 70), n: int = len(CASES)) -> tuple[Workspace, Path]:
    """``n`` native phantom CT volumes and a bundle whose untrained network predicts every class somewhere."""
    ws = Workspace.at(root).ensure()
    for i in range(n):
        hu, label = phantom.phantom_hu(shape, i, (3.0, 1.2, 1.0))
        write_case(ws.volume_path(f"case{i:03d}"), CaseVolume(f"case{i:03d}", np.round(hu).astype(np.int16),
                                                              GEOMETRY, {"gt": label}, dict(phantom.LABEL_NAMES)))
    plan = phantom.make_plan()
    torch.manual_seed(3)
    net = build_segmenter(plan, deep_supervision=False)
    with torch.no_grad():
        for p in net.parameters():
            p.mul_(0.1)
    bundle = save_bundle(ws, "cnn", plan, net.state_dict(), deep_supervision=False, validation={"mean_dice": 0.1},
                         training={}, train_cases=[], val_cases=[], history=[])
    return ws, bundle


def _cfg(ws: Workspace, **infer: object) -> MedsegConfig:
    """CPU inference; in-process on one torch thread, as each case runs on a worker (several threads may
    round convolution sums differently: docs in deploy/dask/README.md, "Same outputs")."""
    return MedsegConfig.model_validate({
        "workspace": str(ws.root),
        "train": {"device": "cpu", "num_threads": 1},
        "infer": {"overlap": 0.25, "dicom_seg": False, **infer},
        "dask": {"n_workers": 2, "threads_per_worker": 1, "memory_limit": "2GiB"},
    })


def _files(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (relative path -> bytes)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _reference(ws: Workspace, bundle: Path, cases: list[str]) -> dict[str, bytes]:
    """The outputs of the one-process run (moved aside, so the next run starts from nothing)."""
    out = run_infer_stage(_cfg(ws, workers=1), ModelFamily.CNN, bundle_path=bundle, case_ids=cases)
    assert out.stats["layout"] == "in-process" and out.stats["cases_per_worker"] == {}
    folder = Path(out.outputs[0])
    files = _files(folder)
    shutil.rmtree(folder)
    return files


def test_two_local_workers_share_the_cases_and_write_the_one_process_outputs(tmp_path: Path) -> None:
    ws, bundle = _workspace(tmp_path / "ws")
    cases = [*CASES[:4], "no-such-case", CASES[4]]
    ref = _reference(ws, bundle, cases)
    assert len([n for n in ref if n.endswith(".nii.gz")]) == 5

    events: list[tuple[str, int, int]] = []
    out = run_infer_stage(_cfg(ws, workers=2), ModelFamily.CNN, bundle_path=bundle, case_ids=cases,
                          progress=lambda label, done, total: events.append((label, done, total)))
    stats = out.stats
    assert stats["layout"] == "LocalCluster 2 workers", stats["layout_reason"]
    assert (stats["predicted"], stats["failed"]) == (5, 1)
    # the broken case failed alone, named with the reason; the five others were predicted
    assert list(stats["errors"]) == ["no-such-case"] and "no-such-case" in stats["errors"]["no-such-case"]
    per_worker = stats["cases_per_worker"]
    assert len(per_worker) == 2 and all(n >= 1 for n in per_worker.values()) and sum(per_worker.values()) == 5
    assert set(stats["worker_peak_rss_mib"]) == set(per_worker)
    assert [e[1] for e in events if e[1] > 0] == list(range(1, 7)) and events[-1][2] == 6
    folder = Path(out.outputs[0])
    got = _files(folder)
    assert sorted(got) == sorted(ref)
    differing = [name for name in ref if got[name] != ref[name]]
    assert differing == []
    pred = read_case(folder / "case000.zarr").labels["pred"]
    assert set(np.unique(pred)) == {0, 1, 2}  # a real label map, not a constant one


def test_a_standing_cluster_loads_the_model_once_per_worker_and_reruns_only_what_is_missing(tmp_path: Path) -> None:
    ws, bundle = _workspace(tmp_path / "ws", n=4)
    with dask_client(DaskConfig(n_workers=2, memory_limit="2GiB"), preload=INFER_WORKER_MODULES) as client:
        assert client.scheduler is not None
        cfg = _cfg(ws).model_copy(update={"dask": DaskConfig(address=client.scheduler.address)})
        first = run_infer_stage(cfg, ModelFamily.CNN, bundle_path=bundle, case_ids=CASES[:4])
        assert first.stats["layout"] == "cluster" and first.stats["predicted"] == 4
        folder = Path(first.outputs[0])
        shutil.rmtree(folder / "case002.zarr")  # the "done" marker of one case is gone: it is redone
        again = run_infer_stage(cfg, ModelFamily.CNN, bundle_path=bundle, case_ids=CASES[:4])
        loads = client.run(model_cache.loads)
    assert (again.stats["predicted"], again.stats["skipped"]) == (1, 3)
    assert sum(again.stats["cases_per_worker"].values()) == 1
    # one model load per worker process, for all its cases of both runs (only busy workers load it)
    assert sorted(loads.values()) in ([1, 1], [0, 1])
    assert sum(first.stats["cases_per_worker"].values()) == 4
    assert len(first.stats["cases_per_worker"]) == sum(loads.values())
    assert is_complete(folder / "case002.zarr")


@pytest.mark.slow
def test_a_worker_killed_mid_run_loses_no_case_and_leaves_no_half_output(tmp_path: Path) -> None:
    ws, bundle = _workspace(tmp_path / "ws", shape=(40, 96, 110), n=8)
    cases = [f"case{i:03d}" for i in range(8)]
    ref = _reference(ws, bundle, cases)
    killed: dict[str, int] = {}
    with dask_client(DaskConfig(n_workers=2, memory_limit="2GiB"), preload=INFER_WORKER_MODULES) as client:
        assert client.scheduler is not None
        cfg = _cfg(ws).model_copy(update={"dask": DaskConfig(address=client.scheduler.address)})

        def kill_a_busy_worker(_label: str, done: int, total: int) -> None:
            if killed or done < 1 or done >= total:
                return
            busy = [addr for addr, keys in client.processing().items() if keys]
            pids = client.run(os.getpid)
            if busy:
                os.kill(pids[busy[0]], signal.SIGKILL)  # the worker process, not its nanny
                killed.update(done=done, pid=pids[busy[0]])

        out = run_infer_stage(cfg, ModelFamily.CNN, bundle_path=bundle, case_ids=cases, progress=kill_a_busy_worker)
    assert killed, "no worker was busy after the first finished case: the kill did not land mid-run"
    # a case the killed worker had written whole (atomic rename) before dying is found done by its retry
    done = out.stats["predicted"] + out.stats["skipped"]
    assert (done, out.stats["failed"]) == (8, 0), out.stats
    folder = Path(out.outputs[0])
    assert not [p.name for p in folder.iterdir() if p.name.startswith(".")]  # no partial store or temp file
    got = _files(folder)
    assert sorted(got) == sorted(ref) and [n for n in ref if got[n] != ref[n]] == []
