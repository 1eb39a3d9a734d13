"""bench/scale.py (a): batch inference over Dask workers.

(a) :func:`infer_rows`: ``medseg infer``'s stage (:func:`medseg.stages.infer.run_infer_stage`) predicts
``--cases`` synthetic CT volumes (``--slices`` x ``--size`` x ``--size`` int16 at (2.0, 0.8, 0.8) mm: a
body ellipse, an organ, noise) with one bundle (a 4-level U-Net, filters 16-128, patch 32x96x96,
random fixed weights; target spacing (2.0, 1.0, 1.0) mm, overlap 0.5, fp32 on a CPU without bf16
units), from an empty predictions folder each time, in these layouts:

* ``in-process``: ``infer.workers=1``, torch on every core (what ``medseg infer`` did before);
* ``1 worker x 1 thread``: a LocalCluster of one Dask worker, one case at a time;
* ``1 worker x T threads`` (T = cores): T cases at a time in one worker process;
* ``N workers x 1 thread`` (N = cores): one case per worker process;

on a GPU node (``--device cuda``) ``1 GPU`` (in-process) and ``all GPUs`` (one pinned worker per GPU).
Each layout runs in a child process (``bench/_measure.py``): its wall time and the peak RSS of its
process tree; the stage reports its own time (the cluster's start included), the mean time of a
case on its worker, the cases each worker predicted and each worker's peak RSS. Every layout's
output files are compared, byte for byte, with the first Dask row's (``same_files_as_ref``), and
its label voxels too (``voxels_differing``, over all cases): every Dask layout runs a case on one
torch thread, the in-process row on all cores, whose convolution sums may round differently.

Run through ``bench/scale.py`` (its usage); its RESULT line carries this part's keys.

Keys of the RESULT line: ``RESULT infer_workers_used=... infer_speedup=...``: the workers that predicted cases in
the widest layout, and the 1-worker wall time (stage) over the widest layout's.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(BENCH))

from _synthetic_ct import synthetic_ct  # noqa: E402

NATIVE_SPACING = (2.0, 0.8, 0.8)
TARGET_SPACING = (2.0, 1.0, 1.0)
PATCH = (32, 96, 96)
FILTERS = [16, 32, 64, 128]
LABELS = {1: "organ", 2: "lesion"}


# --- (a) inference over Dask workers ---------------------------------------------------------------


def write_infer_workspace(root: Path, cases: int, slices: int, size: int) -> tuple[Path, Path]:
    """A workspace of ``cases`` native CT volumes and a bundle; returns (workspace root, bundle folder)."""
    import torch

    from medseg.geometry import Geometry
    from medseg.io.volume_store import CaseVolume, write_case
    from medseg.plan import Normalization, Plan
    from medseg.training.bundle import save_bundle
    from medseg.training.network import build_segmenter
    from medseg.workspace import Workspace

    ws = Workspace.at(root).ensure()
    geometry = Geometry.create(NATIVE_SPACING, (0.0, 0.0, 0.0))
    for i in range(cases):
        hu, organ = synthetic_ct(i, slices, size)
        label = organ.astype(np.uint8)
        write_case(ws.volume_path(f"case{i:03d}"), CaseVolume(f"case{i:03d}", hu, geometry, {"gt": label}, LABELS))
    plan = Plan(
        modality="CT", normalization=Normalization.CT, clip_range=(-200.0, 300.0), intensity_mean=60.0,
        intensity_std=80.0, target_spacing=TARGET_SPACING, median_shape=(slices, size, size), patch_size=PATCH,
        kernel_sizes=[[1, 3, 3], [3, 3, 3], [3, 3, 3], [3, 3, 3]],
        strides=[[1, 1, 1], [1, 2, 2], [2, 2, 2], [2, 2, 2]], filters=FILTERS, num_classes=3, label_names=LABELS,
    )
    torch.manual_seed(0)
    net = build_segmenter(plan, deep_supervision=False)
    bundle = save_bundle(ws, "cnn", plan, net.state_dict(), deep_supervision=False, validation={"mean_dice": 0.0},
                         training={}, train_cases=[], val_cases=[], history=[])
    return ws.root, bundle


def _child_infer(spec: dict[str, Any]) -> None:
    """Run the infer stage with ``spec``'s overrides; print its stats (``BENCHJSON``)."""
    import resource
    import time
    from contextlib import ExitStack

    from medseg.config import DaskConfig, MedsegConfig, ModelFamily
    from medseg.inference.layout import INFER_WORKER_MODULES
    from medseg.runtime.cluster import dask_client
    from medseg.stages.infer import run_infer_stage

    cfg = MedsegConfig.model_validate(spec["config"])
    t0 = time.perf_counter()
    with ExitStack() as stack:
        if spec.get("local_cluster"):  # a LocalCluster of a size infer.workers does not start (1 worker)
            dask = DaskConfig(**spec["local_cluster"], memory_limit=cfg.dask.memory_limit)
            client = stack.enter_context(dask_client(dask, preload=INFER_WORKER_MODULES))
            cfg = cfg.model_copy(update={"dask": dask.model_copy(update={"address": client.scheduler.address})})
        out = run_infer_stage(cfg, ModelFamily.CNN, bundle_path=Path(spec["bundle"]), case_ids=spec["cases"])
        seconds = time.perf_counter() - t0
    stats = dict(out.stats)
    stats["stage_s"] = seconds
    stats["process_peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    stats["output_dir"] = out.outputs[0]
    print("BENCHJSON " + json.dumps(stats, default=str), flush=True)


def _labels(folder: Path) -> dict[str, np.ndarray]:
    """The label map of every prediction store in ``folder`` (case id -> array)."""
    from medseg.io.volume_store import read_case

    return {p.stem: read_case(p).labels["pred"] for p in sorted(folder.glob("*.zarr"))}


def _same_files(a: Path, b: Path) -> bool:
    """Every file under ``a`` and ``b`` has the same relative path and bytes."""
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    if files != sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file()):
        return False
    return all((a / f).read_bytes() == (b / f).read_bytes() for f in files)


Layout = tuple[str, dict[str, Any], dict[str, int] | None]


def infer_layouts(device: str, cores: int, gpus: int) -> list[Layout]:
    """(row name, config overrides, a LocalCluster the child starts itself) of the layouts to measure.

    ``infer.workers`` starts LocalClusters of 2 or more workers; the 1-worker rows start theirs in
    the child (same :func:`~medseg.runtime.cluster.dask_client` call, its start timed too) and pass
    it as ``dask.address``.
    """
    if device == "cuda":
        return [("1 GPU (in-process)", {"infer": {"workers": 1}}, None),
                (f"all GPUs ({gpus} workers)", {"infer": {"workers": "auto"}}, None)]
    rows: list[Layout] = [
        (f"in-process, torch {cores} threads", {"infer": {"workers": 1}, "train": {"num_threads": cores}}, None),
        ("Dask 1 worker x 1 thread", {}, {"n_workers": 1, "threads_per_worker": 1}),
    ]
    if cores > 1:
        rows.append((f"Dask 1 worker x {cores} threads", {}, {"n_workers": 1, "threads_per_worker": cores}))
        rows.append((f"Dask {cores} workers x 1 thread",
                     {"infer": {"workers": cores}, "dask": {"n_workers": cores, "threads_per_worker": 1}}, None))
    return rows


def infer_rows(workdir: Path, cases: int = 8, slices: int = 48, size: int = 160, device: str = "cpu",
               cores: int | None = None) -> list[dict[str, Any]]:
    """Part (a): one row per layout of :func:`infer_layouts` (wall times, cases and peak RSS per worker)."""
    from _measure import run_measured

    from medseg.hardware import cpu_model, cpu_precision
    from medseg.runtime.gpu_workers import node_gpu_ids

    cores = cores or len(os.sched_getaffinity(0))
    gpus = len(node_gpu_ids()) if device == "cuda" else 0
    root, bundle = write_infer_workspace(workdir / "ws", cases, slices, size)
    case_ids = [f"case{i:03d}" for i in range(cases)]
    rows: list[dict[str, Any]] = []
    kept: list[Path] = []
    for name, overrides, local_cluster in infer_layouts(device, cores, gpus):
        config: dict[str, Any] = {"workspace": str(root), "train": {"device": device}, "infer": {"dicom_seg": False},
                                  "dask": {"memory_limit": "4GiB"}}
        for section, values in overrides.items():
            config[section] = {**config.get(section, {}), **values}
        spec = {"config": config, "bundle": str(bundle), "cases": case_ids, "local_cluster": local_cluster}
        m = run_measured(name, [sys.executable, __file__, "--infer-child", json.dumps(spec)], cwd=REPO)
        if not m.ok:
            raise RuntimeError(f"{name} failed (rc {m.rc}):\n{m.log_tail}")
        info = m.info
        kept.append(workdir / "outputs" / f"{len(rows):02d}")
        kept[-1].parent.mkdir(exist_ok=True)
        shutil.move(info["output_dir"], kept[-1])  # the next layout starts from an empty predictions folder
        per_worker = info.get("cases_per_worker") or {"(this process)": info["predicted"]}
        rss = info.get("worker_peak_rss_mib") or {"(this process)": round(info["process_peak_rss_mib"], 1)}
        rows.append({
            "layout": name,
            "stage_s": round(float(info["stage_s"]), 2),
            "process_s": round(m.wall_s, 2),
            "s_per_case": info["seconds_per_case"],
            "workers_used": len(per_worker),
            "cases_per_worker": per_worker,
            "peak_rss_mib_per_worker": rss,
            "tree_peak_rss_mib": round(m.rss_tree_mib, 1),
            "cpu": cpu_model(),
            "precision": "bf16/fp32 (cuda autocast)" if device == "cuda" else cpu_precision(),
        })
    # outputs against the first Dask row (in-process on several torch threads may round differently)
    ref = next((i for i, r in enumerate(rows) if r["workers_used"] and r["layout"].startswith("Dask")), 0)
    ref_labels = _labels(kept[ref])
    for row, folder in zip(rows, kept, strict=True):
        labels = _labels(folder)
        row["same_files_as_ref"] = _same_files(folder, kept[ref])
        row["voxels_differing"] = int(sum((labels[c] != ref_labels[c]).sum() for c in ref_labels))
    return rows


def print_infer(rows: list[dict[str, Any]]) -> tuple[int, float]:
    """Print the table; return (workers used by the widest layout, 1-worker stage time / widest stage time)."""
    print(f"\n(a) inference, {rows[0]['cpu']}, {rows[0]['precision']}")
    cols = ["layout", "stage_s", "process_s", "s_per_case", "workers_used", "cases_per_worker",
            "peak_rss_mib_per_worker", "tree_peak_rss_mib", "same_files_as_ref", "voxels_differing"]
    print(" | ".join(cols))
    for r in rows:
        print(" | ".join(str(r[c]) for c in cols))
    widest = max(rows, key=lambda r: (r["workers_used"], -r["stage_s"]))
    one = next((r for r in rows if r["layout"].startswith(("Dask 1 worker x 1", "1 GPU"))), rows[0])
    return int(widest["workers_used"]), one["stage_s"] / widest["stage_s"]


def main() -> None:
    """The child process of one layout (``--infer-child SPEC``)."""
    ap = argparse.ArgumentParser(description="a child of bench/scale.py (a)")
    ap.add_argument("--infer-child", required=True)
    _child_infer(json.loads(ap.parse_args().infer_child))


if __name__ == "__main__":
    main()
