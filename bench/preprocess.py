"""Benchmark medseg preprocessing against nnU-Net v2 ``nnUNetv2_plan_and_preprocess`` on one dataset.

Dataset: ``--cases`` synthetic CT volumes at real CT sizes (``--size`` x ``--size`` pixels, about
``--slices`` slices, pixel spacing 0.65-0.9 mm, slice spacing 1.0-2.5 mm: a body ellipse with an
organ and a lesion, both labeled), written once in nnU-Net raw format
(``DatasetNNN_MedsegBench/imagesTr/case_XXXX_0000.nii.gz``, ``labelsTr/case_XXXX.nii.gz``,
``dataset.json`` with ``channel_names {"0": "CT"}`` and labels background/organ/lesion).

Both tools start from these NIfTI files, with the same number of processes ``--np``:

* nnU-Net: ``nnUNetv2_plan_and_preprocess -d NNN -c 3d_fullres -np N -npfp N`` (fingerprint,
  planning, 3d_fullres preprocessing), from its own venv (``--nnunet-venv``, default
  /tmp/nnunet-venv; create it with ``python3 -m venv /tmp/nnunet-venv &&
  /tmp/nnunet-venv/bin/pip install torch==2.13.0 && /tmp/nnunet-venv/bin/pip install -c
  constraints.txt nnunetv2``). It is kept out of the project venv because its ``argparse``
  backport breaks Prefect's server.
* medseg: ``ingest`` of the nnU-Net raw folder (NIfTI -> Zarr volume stores, with validation and
  catalog) + ``run_preprocess`` (fingerprint, plan, per-case preprocessing into OME-Zarr), on one
  LocalCluster of N single-threaded worker processes. The ``medseg`` wall time is the sum; the
  preprocessing part alone is reported too.

Each tool runs as a child process on a warm page cache; wall time is process start to exit (imports,
pool / cluster start-up and output writing count) and peak RSS is polled with psutil every 50 ms
(sum over the process tree, and the largest single process). Agreement: target spacing of the
3d_fullres configuration vs medseg's plan, and per-case preprocessed shapes.

Usage::

    python bench/preprocess.py [--cases 40] [--slices 64] [--size 512] [--np 2] [--workdir DIR]
                               [--nnunet-venv /tmp/nnunet-venv] [--tools medseg,nnunet]

Ends with ``RESULT medseg_s=... nnunet_s=... ratio=...`` (ratio = medseg / nnU-Net wall time).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from bench._measure import Measured, run_measured  # noqa: E402

DATASET_ID = 501
DATASET_NAME = f"Dataset{DATASET_ID:03d}_MedsegBench"

# --- dataset ------------------------------------------------------------------------------------


def case_geometry(seed: int, index: int, slices: int) -> tuple[int, float, float]:
    """(number of slices, slice spacing mm, pixel spacing mm) of one case."""
    rng = np.random.default_rng([seed, index])
    z_spacing = float(rng.choice([1.0, 1.25, 1.5, 2.0, 2.5]))
    pixel = float(np.round(rng.uniform(0.65, 0.9), 3))
    # similar body length in mm whatever the slice spacing, within +-20 %
    n = int(round(slices * 1.5 / z_spacing * rng.uniform(0.8, 1.2)))
    return max(16, n), z_spacing, pixel


def write_case(raw: str, seed: int, index: int, slices: int, size: int) -> tuple[str, list[int]]:
    """Write ``case_XXXX`` (image + label NIfTI, RAS affine, axial); returns (name, (z, y, x))."""
    import nibabel as nib

    n, dz, px = case_geometry(seed, index, slices)
    rng = np.random.default_rng([seed, index, 1])
    zz = (np.arange(n, dtype=np.float32) - n / 2)[:, None, None] * dz
    yy = (np.arange(size, dtype=np.float32) - size / 2)[None, :, None] * px
    xx = (np.arange(size, dtype=np.float32) - size / 2)[None, None, :] * px
    a, b = 0.42 * size * px * rng.uniform(0.85, 1.0), 0.32 * size * px * rng.uniform(0.85, 1.0)
    body = (yy / b) ** 2 + (xx / a) ** 2 <= 1.0
    body = np.broadcast_to(body, (n, size, size))
    c = rng.uniform(-15, 15, 3)
    r = 0.33 * b
    organ = ((zz - c[0]) / (1.6 * r)) ** 2 + ((yy - c[1]) / r) ** 2 + ((xx - c[2] - 0.3 * a) / r) ** 2 <= 1.0
    lesion = (zz - c[0]) ** 2 + (yy - c[1]) ** 2 + (xx - c[2] - 0.3 * a) ** 2 <= (0.3 * r) ** 2
    img = np.where(body, np.float32(40.0), np.float32(-1000.0))
    img += rng.standard_normal(img.shape, dtype=np.float32) * 12.0
    img[organ & body] += 60.0
    img[lesion & body] += 90.0
    lab = np.zeros(img.shape, np.uint8)
    lab[organ & body] = 1
    lab[lesion & body] = 2
    # NIfTI holds array.transpose(2, 1, 0) (x, y, z); RAS affine of an axial LPS-aligned stack
    affine = np.diag([-px, -px, dz, 1.0])
    name = f"case_{index:04d}"
    root = Path(raw)
    image_file = root / "imagesTr" / f"{name}_0000.nii.gz"
    nib.save(nib.Nifti1Image(img.astype(np.int16).transpose(2, 1, 0), affine), image_file)
    nib.save(nib.Nifti1Image(lab.transpose(2, 1, 0), affine), root / "labelsTr" / f"{name}.nii.gz")
    return name, [n, size, size]


def build_dataset(raw: Path, cases: int, slices: int, size: int, seed: int, workers: int) -> dict[str, Any]:
    """Write the dataset (skipped when ``raw/bench.json`` says it matches these parameters)."""
    params = {"cases": cases, "slices": slices, "size": size, "seed": seed}
    stamp = raw / "bench.json"
    if stamp.is_file() and json.loads(stamp.read_text()).get("params") == params:
        return dict(json.loads(stamp.read_text()))
    if raw.exists():
        shutil.rmtree(raw)
    (raw / "imagesTr").mkdir(parents=True)
    (raw / "labelsTr").mkdir()
    with ProcessPoolExecutor(workers) as pool:
        jobs = [pool.submit(write_case, str(raw), seed, i, slices, size) for i in range(cases)]
        shapes = dict(j.result() for j in jobs)
    dataset = {
        "channel_names": {"0": "CT"},
        "labels": {"background": 0, "organ": 1, "lesion": 2},
        "numTraining": cases,
        "file_ending": ".nii.gz",
    }
    (raw / "dataset.json").write_text(json.dumps(dataset, indent=2))
    info = {"params": params, "shapes": shapes, "voxels": int(sum(np.prod(s) for s in shapes.values()))}
    stamp.write_text(json.dumps(info))
    return info


# --- measured child processes ---------------------------------------------------------------------

_MEDSEG = r"""
import json, sys, time
from pathlib import Path
import zarr
from medseg.config import MedsegConfig
from medseg.ingest.run import ingest
from medseg.io.volume_store import read_meta
from medseg.runtime.cluster import dask_client
from medseg.plan import Plan
from medseg.preprocess.run import run_preprocess
from medseg.workspace import Workspace

raw, root, workers = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
t0 = time.perf_counter()
ws = Workspace.at(root).ensure()
cfg = MedsegConfig(workspace=root, sources=[raw])
cfg.dask.n_workers = workers
cfg.dask.threads_per_worker = 1
cfg.dask.memory_limit = "6GiB"
with dask_client(cfg.dask) as client:
    t1 = time.perf_counter()
    s_in = ingest([raw], ws, cfg.ingest, client=client)
    t2 = time.perf_counter()
    s_pre = run_preprocess(ws, cfg, client)
    t3 = time.perf_counter()
plan = Plan.load(ws.plan_path)
shapes = {}
for p in sorted((ws.preprocessed_dir / "cases").glob("*.zarr")):
    m = read_meta(p)
    shapes[m["source"]["source_case"]["dataset_case"]] = list(zarr.open_array(str(p / "0"), mode="r").shape)
print("BENCHJSON " + json.dumps({
    "cluster_s": t1 - t0, "ingest_s": t2 - t1, "preprocess_s": t3 - t2,
    "ingested": s_in.labeled_cases, "processed": s_pre.cases_processed, "failed": len(s_pre.failed),
    "spacing": list(plan.target_spacing), "shapes": shapes,
}))
"""

_NNUNET_SHAPES = r"""
import json, sys
from pathlib import Path
import blosc2
root = Path(sys.argv[1])
plans = json.loads((root / "nnUNetPlans.json").read_text())
cfg = plans["configurations"]["3d_fullres"]
shapes = {p.name[: -len(".b2nd")]: list(blosc2.open(str(p), mode="r").shape)[1:]
          for p in sorted((root / cfg["data_identifier"]).glob("*.b2nd")) if not p.name.endswith("_seg.b2nd")}
print("BENCHJSON " + json.dumps({"spacing": cfg["spacing"], "shapes": shapes,
                                 "transpose_forward": plans.get("transpose_forward")}))
"""


Result = Measured


def run_medseg(raw: Path, work: Path, workers: int, timeout: float) -> Result:
    ws = work / "medseg_ws"
    if ws.exists():
        shutil.rmtree(ws)
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONWARNINGS": "ignore"}
    return run_measured("medseg", [sys.executable, "-c", _MEDSEG, str(raw), str(ws), str(workers)], env, timeout,
                        cwd=REPO)


def run_nnunet(venv: Path, nn_raw: Path, work: Path, workers: int, timeout: float) -> Result:
    exe = venv / "bin" / "nnUNetv2_plan_and_preprocess"
    if not exe.is_file():
        raise SystemExit(
            f"{exe} not found: python3 -m venv {venv} && {venv}/bin/pip install torch==2.13.0 &&"
            f" {venv}/bin/pip install -c {REPO / 'constraints.txt'} nnunetv2"
        )
    pre = work / "nnUNet_preprocessed"
    if pre.exists():
        shutil.rmtree(pre)
    pre.mkdir(parents=True)
    env = {
        **{k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")},
        "nnUNet_raw": str(nn_raw),
        "nnUNet_preprocessed": str(pre),
        "nnUNet_results": str(work / "nnUNet_results"),
        "PYTHONWARNINGS": "ignore",
        # nnU-Net's own default; its workers use one BLAS/OpenMP thread each like medseg's
        "OMP_NUM_THREADS": "1",
        "nnUNet_def_n_proc": str(workers),
    }
    cmd = [str(exe), "-d", str(DATASET_ID), "-c", "3d_fullres", "-np", str(workers), "-npfp", str(workers),
           "--no_pbar"]
    res = run_measured("nnunet", cmd, env, timeout, cwd=REPO)
    if res.rc == 0:
        probe = subprocess.run([str(venv / "bin" / "python"), "-c", _NNUNET_SHAPES, str(pre / DATASET_NAME)],
                               capture_output=True, text=True, env=env, check=False)
        for line in probe.stdout.splitlines():
            if line.startswith("BENCHJSON "):
                res.info = json.loads(line[len("BENCHJSON ") :])
        if not res.info:
            res.log_tail += "\n[shape probe failed]\n" + probe.stderr[-2000:]
    return res


# --- report -------------------------------------------------------------------------------------


def agreement(med: dict[str, Any], nn: dict[str, Any]) -> list[str]:
    lines = []
    sm, sn = med.get("spacing"), nn.get("spacing")
    if sm and sn:
        rel = max(abs(a - b) / b for a, b in zip(sm, sn, strict=True))
        lines.append(
            f"target spacing (z, y, x) mm: medseg {tuple(round(v, 4) for v in sm)}"
            f"  nnU-Net {tuple(round(v, 4) for v in sn)}  max rel diff {rel:.2e}"
        )
    shm, shn = med.get("shapes", {}), nn.get("shapes", {})
    common = sorted(set(shm) & set(shn))
    if common:
        diffs = [max(abs(a - b) for a, b in zip(shm[c], shn[c], strict=True)) for c in common]
        exact = sum(d == 0 for d in diffs)
        lines.append(
            f"preprocessed shapes: {exact}/{len(common)} identical, max |diff| {max(diffs)} voxel(s)"
            f" (cases only in medseg {len(set(shm) - set(shn))}, only in nnU-Net {len(set(shn) - set(shm))})"
        )
        worst = common[int(np.argmax(diffs))]
        lines.append(f"  e.g. {worst}: medseg {shm[worst]} nnU-Net {shn[worst]}")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description="medseg vs nnU-Net v2 preprocessing benchmark")
    ap.add_argument("--cases", type=int, default=40)
    ap.add_argument("--slices", type=int, default=64, help="typical slices at 1.5 mm (scaled by spacing)")
    ap.add_argument("--size", type=int, default=512, help="in-plane pixels")
    ap.add_argument("--np", dest="workers", type=int, default=2, help="processes for both tools")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "medseg-bench-preprocess")
    ap.add_argument("--nnunet-venv", type=Path, default=Path("/tmp/nnunet-venv"))
    ap.add_argument("--tools", default="medseg,nnunet")
    ap.add_argument("--timeout", type=float, default=1800.0, help="per tool, seconds")
    args = ap.parse_args()
    tools = [t.strip() for t in args.tools.split(",") if t.strip()]
    work: Path = args.workdir
    nn_raw = work / "nnUNet_raw"
    raw = nn_raw / DATASET_NAME
    t = time.perf_counter()
    info = build_dataset(raw, args.cases, args.slices, args.size, args.seed, args.workers)
    gvox = info["voxels"] / 1e9
    print(f"dataset: {args.cases} CT cases, {gvox:.2f} Gvoxel int16 ({gvox * 2:.1f} GB in memory),"
          f" shapes {min(s[0] for s in info['shapes'].values())}-{max(s[0] for s in info['shapes'].values())}"
          f" x {args.size} x {args.size}; ready in {time.perf_counter() - t:.0f}s; {args.workers} processes;"
          f" load {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    results: dict[str, Result] = {}
    for tool in tools:
        if tool == "medseg":
            results[tool] = run_medseg(raw, work, args.workers, args.timeout)
        elif tool == "nnunet":
            results[tool] = run_nnunet(args.nnunet_venv, nn_raw, work, args.workers, args.timeout)
        else:
            raise SystemExit(f"unknown tool {tool!r} (medseg, nnunet)")
        r = results[tool]
        if r.rc != 0:
            print(f"--- {tool} exited {r.rc}; output tail:\n{r.log_tail}")
    head = f"{'tool':<22} {'wall s':>8} {'RSS tree MiB':>13} {'RSS max MiB':>12}  notes"
    print("\n" + head + "\n" + "-" * len(head))
    for tool, r in results.items():
        note = "" if r.rc == 0 else f"exit {r.rc}"
        if tool == "medseg" and r.rc == 0:
            i = r.info
            note = (f"ingest {i['ingest_s']:.1f}s + preprocess {i['preprocess_s']:.1f}s"
                    f" (cluster start {i['cluster_s']:.1f}s); {i['processed']} cases, {i['failed']} failed")
        if tool == "nnunet" and r.rc == 0:
            note = f"{len(r.info.get('shapes', {}))} cases (fingerprint + plans + 3d_fullres)"
        print(f"{tool:<22} {r.wall_s:>8.1f} {r.rss_tree_mib:>13.0f} {r.rss_max_mib:>12.0f}  {note}")
    if "medseg" in results and results["medseg"].rc == 0:
        m = results["medseg"]
        print(f"{'medseg preprocess only':<22} {m.info['preprocess_s']:>8.1f} {'':>13} {'':>12}"
              "  run_preprocess on the ingested stores (same cluster)")
    if {"medseg", "nnunet"} <= set(results):
        for line in agreement(results["medseg"].info, results["nnunet"].info):
            print(line)
        m, n = results["medseg"], results["nnunet"]
        ratio = m.wall_s / n.wall_s if n.wall_s > 0 else float("nan")
        print(f"RESULT medseg_s={m.wall_s:.1f} nnunet_s={n.wall_s:.1f} ratio={ratio:.2f}")


if __name__ == "__main__":
    main()
