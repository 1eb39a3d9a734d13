"""Segmentation quality at an equal wall-clock training budget: medseg CNN and GAN vs nnU-Net v2 (2d and 3d_fullres).

Data (``bench/_quality_data.py``): by default the 200 labeled MSD hippocampus cases of
``../shared/data/real/msd-hippocampus`` with one fixed split, 160 training / 40 test cases
(``--test-cases``, ``--split-seed``); ``--dataset pgbm`` runs the 4 labeled PGBM DICOM studies
leave-one-study-out (``--patients PGBM-001 --channels``: its 2 studies with T1post, FLAIR and T2 as
channels); ``--train DIR ... --test DIR ...`` any labeled folders medseg ingests.

For each fold and repeat (``--repeats N``: seeds ``seed .. seed+N-1``):

1. medseg ingests the training and test sources and preprocesses the labeled training cases with its
   own plan.
2. The labeled training cases are exported as NIfTI in nnU-Net's raw format and
   ``nnUNetv2_plan_and_preprocess -c <configs>`` preprocesses them its own way (once per fold).
3. Training, each in its own child process with the same budget of ``--minutes`` of training wall
   clock, on all training cases: medseg CNN and medseg GAN (``train.fit_minutes``: the iteration budget
   is planned to the minutes from the measured step time and the poly LR anneals over it;
   ``train.max_minutes`` = 1.1 × the minutes as a safety cap; validation on the training cases), and
   nnU-Net's default trainer for every configuration of ``--nnunet-configs`` (default ``2d,3d_fullres``;
   it anneals its poly LR over the wall clock; see ``bench/_quality_nnunet.py``).
4. Every model predicts the test cases (Gaussian sliding window, overlap 0.5, mirror TTA as nnU-Net does by
   default; ``--no-tta`` without); metrics are
   computed per class on the native grid against the reference labels by ``medseg.evaluation``: Dice,
   HD95 (mm), precision, recall and lesion-wise F1 (connected components matched by overlap).

Preprocessing and prediction are timed too but are not part of the budget.

Usage::

    python bench/quality.py [--dataset hippocampus|pgbm] [--train DIR ... --test DIR ...] [--minutes 15]
                            [--tools cnn,gan,nnunet] [--nnunet-configs 2d,3d_fullres] [--repeats 1]
                            [--patients PGBM-001] [--channels] [--device auto|cpu|cuda] [--workdir DIR]
                            [--set train.batch_size=4 ...] [--json FILE] [--reuse]

Ends with ``RESULT medseg_dice=... gan_dice=... nnunet_dice=...``: the mean over test cases of the mean
Dice over foreground classes (nnU-Net's convention), averaged over repeats; ``nnunet_dice`` is the
better nnU-Net configuration, each configuration also has its own key (``nnunet_2d_dice`` ...).
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from _quality_data import DATASETS, Fold, make_folds  # noqa: E402
from _quality_report import print_report  # noqa: E402

DATASET_BASE_ID = 560
#: ``--channels``: the three co-registered PGBM sequences (T1 post-contrast first: the reference grid and labels)
CHANNEL_RULES = ['ingest.channels=[{name: T1post, match: "T1post|T1.*GD"}, {name: FLAIR, match: FLAIR}, '
                 '{name: T2, match: T2, exclude: FLAIR}]']
FAMILIES = ("cnn", "gan")


# --- medseg side ---------------------------------------------------------------------------------------


def medseg_recipe(args: argparse.Namespace) -> Path | None:
    """The config file medseg starts from: ``--recipe``, else ``configs/cpu.yaml`` when training runs on a CPU."""
    if args.recipe is not None:
        return Path(args.recipe)
    import torch

    on_cpu = args.device == "cpu" or (args.device == "auto" and not torch.cuda.is_available())
    return REPO / "configs" / "cpu.yaml" if on_cpu else None


def medseg_config(args: argparse.Namespace, workspace: Path) -> Any:
    from medseg.config_loader import load_config

    overrides = [
        f"workspace={workspace}",
        f"seed={args.seed}",
        f"train.fit_minutes={args.minutes}",  # the iteration budget planned to the minutes, the LR annealed over it
        f"train.max_minutes={args.minutes * 1.1:g}",  # safety cap (flagged in the run table when it fires)
        "train.iterations_per_epoch=50",
        "train.val_every=20",  # validation (on the training cases) every 1000 iterations and at the end
        f"train.device={args.device}",
        "split.test_fraction=0.0",
        "split.val_fraction=0.0",  # all training cases train (as nnU-Net's fold 'all'); validation on some of them
        f"infer.mirror_tta={str(args.tta).lower()}",
        *(CHANNEL_RULES if args.channels else []),
        *args.set,
    ]
    return load_config(medseg_recipe(args), overrides)


def labeled_cases(ws: Any) -> list[Any]:
    from medseg.io.catalog import Catalog

    return [c for c in Catalog(ws.catalog_path).cases() if c.has_labels]


def prepare_medseg(fold: Fold, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Ingest train/test sources, preprocess the training cases; returns timings and case lists."""
    from medseg.ingest.run import ingest
    from medseg.preprocess.run import run_preprocess
    from medseg.workspace import Workspace

    cfg = medseg_config(args, work / "medseg")
    t0 = time.perf_counter()
    ws = Workspace.at(work / "medseg")
    ingest(fold.train, ws, cfg.ingest)
    ws_test = Workspace.at(work / "test")
    ingest(fold.test, ws_test, cfg.ingest)
    t_ingest = time.perf_counter() - t0
    train_cases, test_cases = labeled_cases(ws), labeled_cases(ws_test)
    if not train_cases or not test_cases:
        raise SystemExit(f"fold {fold.index}: {len(train_cases)} labeled train and {len(test_cases)} labeled test "
                         "cases after ingest; both must be > 0")
    t0 = time.perf_counter()
    run_preprocess(ws, cfg, None)
    return {"ws": ws, "ws_test": ws_test, "train": train_cases, "test": test_cases, "ingest_s": t_ingest,
            "preprocess_s": time.perf_counter() - t0}


def child_medseg(args: argparse.Namespace) -> None:
    """Child: train one family with the budget, predict the test cases (native grid, .npy)."""
    import torch

    from medseg.inference.predict import predict_volume
    from medseg.io.volume_store import read_case
    from medseg.plan import Plan
    from medseg.preprocess.case import input_channels
    from medseg.training.bundle import load_bundle
    from medseg.training.train import train_model
    from medseg.workspace import Workspace

    cfg = medseg_config(args, args.ws)
    ws = Workspace.at(args.ws)
    result = train_model(ws, cfg, args.family)
    t0 = time.perf_counter()
    bundle = load_bundle(result.bundle_path)
    device = torch.device("cuda" if result.device.startswith("cuda") else "cpu")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for case in labeled_cases(Workspace.at(args.test_ws)):
        vol = read_case(case.volume_path, labels=False)
        channels = input_channels(case.volume_path, bundle.plan)  # [image] for a single-channel plan
        pred = predict_volume(bundle, channels, vol.geometry, cfg.infer, device)
        np.save(out / f"{case.case_id}.npy", pred)
    plan = Plan.load(ws.plan_path)
    info = {"epochs": result.epochs, "iterations": result.iterations, "train_s": result.seconds,
            "predict_s": time.perf_counter() - t0, "stopped": result.stopped_reason,
            "patch_size": list(plan.patch_size), "spatial_dims": plan.spatial_dims,
            "batch_size": cfg.train.batch_size, "spacing": list(plan.target_spacing)}
    print("BENCHJSON " + json.dumps(info), flush=True)


def run_medseg(family: str, prep: dict[str, Any], work: Path, args: argparse.Namespace,
               child_env: dict[str, str]) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Train + predict one medseg family in a child process; ``(run info, {case_id: prediction})``."""
    from _measure import run_measured

    out = work / f"pred_{family}_seed{args.seed}"
    if args.reuse and all((out / f"{c.case_id}.npy").is_file() for c in prep["test"]):
        return {"reused": True}, {c.case_id: np.load(out / f"{c.case_id}.npy") for c in prep["test"]}
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", "medseg", "--family", family,
           "--ws", str(prep["ws"].root), "--test-ws", str(prep["ws_test"].root), "--out", str(out),
           "--minutes", str(args.minutes), "--device", args.device, "--seed", str(args.seed),
           "--threads", str(args.threads), *(["--channels"] if args.channels else []),
           *([] if args.tta else ["--no-tta"]), *(["--recipe", str(args.recipe)] if args.recipe else []),
           *[a for s in args.set for a in ("--set", s)]]
    m = run_measured(family, cmd, env=child_env, timeout=args.minutes * 60 * 3 + 1800, cwd=REPO)
    if not m.ok:
        raise SystemExit(f"medseg {family} failed (rc {m.rc}):\n{m.log_tail}")
    return ({**m.info, "wall_s": m.wall_s, "rss_mib": m.rss_tree_mib},
            {c.case_id: np.load(out / f"{c.case_id}.npy") for c in prep["test"]})


# --- nnU-Net side ----------------------------------------------------------------------------------------


def prepare_nnunet(fold: Fold, prep: dict[str, Any], work: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Export the raw dataset and run ``nnUNetv2_plan_and_preprocess`` for the configurations (once per fold)."""
    from _measure import run_measured
    from _quality_nnunet import environment, export_raw, planned_configurations

    exe = args.nnunet_venv / "bin" / "nnUNetv2_plan_and_preprocess"
    if not exe.is_file():
        raise SystemExit(f"{exe} not found: create the nnU-Net venv (see bench/_quality_nnunet.py) or drop "
                         "nnunet from --tools")
    did = DATASET_BASE_ID + fold.index
    dataset = f"Dataset{did:03d}_MedsegQuality{fold.index}"
    test_names = export_raw(prep, work / "nnUNet_raw", dataset)
    env = environment(work, args.threads, args.nnunet_workers, args.np)
    plans = work / "nnUNet_preprocessed" / dataset
    done = plans / "nnUNetPlans.json"
    info: dict[str, Any] = {}
    if not (args.reuse and done.is_file()):
        m = run_measured("nnunet-preprocess", [str(exe), "-d", str(did), "-c", *args.configs, "-np",
                                               *[str(args.np)] * len(args.configs), "-npfp", str(args.np)],
                         env=env, timeout=3600, cwd=work)
        if not m.ok:
            raise SystemExit(f"nnUNetv2_plan_and_preprocess failed (rc {m.rc}):\n{m.log_tail}")
        info["preprocess_s"] = m.wall_s
    planned = planned_configurations(plans)
    missing = [c for c in args.configs if c not in planned]
    if missing:
        print(f"nnU-Net did not plan {missing} for this data (planned: {sorted(planned)}); skipped", flush=True)
    return {**info, "dataset": dataset, "env": env, "test_names": test_names,
            "configs": [c for c in args.configs if c in planned]}


def run_nnunet(config: str, nn: dict[str, Any], work: Path, args: argparse.Namespace
               ) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Train + predict one nnU-Net configuration with the budget; ``(run info, {case_id: prediction})``."""
    import torch
    from _measure import run_measured
    from _quality_nnunet import DRIVER, read_prediction

    driver = work / "nnunet_budget_driver.py"
    driver.write_text(DRIVER)
    out = work / f"pred_nnunet_{config}_seed{args.seed}"
    out.mkdir(exist_ok=True)
    device = args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    results = work / "nnUNet_results"
    if not args.reuse:  # a fresh training per repeat (nnU-Net continues from its output folder otherwise)
        shutil.rmtree(results / nn["dataset"] / f"nnUNetTrainerTimeBudget__nnUNetPlans__{config}",
                      ignore_errors=True)
    m = run_measured(f"nnunet-{config}",
                     [str(args.nnunet_venv / "bin" / "python"), str(driver), nn["dataset"], config,
                      str(args.minutes * 60), device, str(work / "nnUNet_raw" / nn["dataset"] / "imagesTs"),
                      str(out), *(["reuse"] if args.reuse else []), *(["tta"] if args.tta else [])],
                     env=nn["env"], timeout=args.minutes * 60 * 3 + 1800, cwd=work)
    if not m.ok:
        raise SystemExit(f"nnU-Net {config} training/prediction failed (rc {m.rc}):\n{m.log_tail}")
    preds = {cid: read_prediction(out / f"{name}.nii.gz") for cid, name in nn["test_names"].items()}
    return {**m.info, "wall_s": m.wall_s, "rss_mib": m.rss_tree_mib}, preds


# --- one fold -------------------------------------------------------------------------------------------


def evaluate(pred: np.ndarray, gt: np.ndarray, spacing: tuple[float, float, float], labels: list[int]
             ) -> dict[int, dict[str, float]]:
    """Per-class metrics of one case (``medseg.evaluation.metrics.case_metrics``)."""
    from medseg.evaluation.metrics import case_metrics

    return case_metrics(pred, gt, spacing, labels)


def run_fold(fold: Fold, args: argparse.Namespace, base: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """All tools and repeats of one fold: metric rows (case × tool × seed) and run rows."""
    import os

    from medseg.io.volume_store import read_case

    work = base / f"fold{fold.index}"
    print(f"\n== fold {fold.index}: {fold.name or ''} train {[p.name for p in fold.train]} -> test "
          f"{[p.name for p in fold.test]}", flush=True)
    prep = prepare_medseg(fold, work, args)
    tools = [t.strip() for t in args.tools.split(",") if t.strip()]
    child_env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": str(args.threads)}
    nn = prepare_nnunet(fold, prep, work, args) if "nnunet" in tools else None
    runs: list[dict[str, Any]] = [{"fold": fold.index, "tool": "prepare", "ingest_s": prep["ingest_s"],
                                   "medseg_preprocess_s": prep["preprocess_s"],
                                   "nnunet_preprocess_s": (nn or {}).get("preprocess_s")}]
    references = {}
    for case in prep["test"]:
        vol = read_case(case.volume_path)
        references[case.case_id] = (vol.labels["gt"], tuple(float(s) for s in vol.geometry.spacing))
    names = {int(k): str(v) for c in prep["train"] for k, v in c.label_names.items()} or {1: "foreground"}
    rows = []
    first_seed = args.seed
    for repeat in range(args.repeats):
        args.seed = first_seed + repeat
        jobs: list[tuple[str, Any]] = [(f, lambda f=f: run_medseg(f, prep, work, args, child_env))
                                       for f in tools if f in FAMILIES]
        if nn is not None:
            jobs += [(f"nnunet_{c}", lambda c=c, nn=nn: run_nnunet(c, nn, work, args)) for c in nn["configs"]]
        for tool, job in jobs:
            info, preds = job()
            runs.append({"fold": fold.index, "tool": tool, "seed": args.seed, **info})
            for cid, (gt, spacing) in references.items():
                pred = preds[cid]
                if pred.shape != gt.shape:
                    raise SystemExit(f"{tool} prediction of {cid} has shape {pred.shape}, reference {gt.shape}")
                for label, metrics in evaluate(pred, gt, spacing, sorted(names)).items():  # type: ignore[arg-type]
                    rows.append({"fold": fold.index, "seed": args.seed, "case": cid, "tool": tool,
                                 "class": names[label], **metrics})
    args.seed = first_seed
    return rows, runs


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    ap.add_argument("--dataset", default="hippocampus", choices=DATASETS)
    ap.add_argument("--train", nargs="+", default=None, help="labeled source folders to train on")
    ap.add_argument("--test", nargs="+", default=None, help="labeled source folders to test on")
    ap.add_argument("--test-cases", type=int, default=40, help="hippocampus: test cases of the fixed split")
    ap.add_argument("--split-seed", type=int, default=0, help="hippocampus: seed of the fixed split")
    ap.add_argument("--minutes", type=float, default=15.0, help="training wall-clock budget per model")
    ap.add_argument("--folds", type=int, default=0, help="pgbm: run only the first N folds (0 = all)")
    ap.add_argument("--tools", default="cnn,gan,nnunet")
    ap.add_argument("--nnunet-configs", default="2d,3d_fullres",
                    help="nnU-Net configurations, each trained with the same budget")
    ap.add_argument("--patients", nargs="+", default=None, help="pgbm: only these patients (e.g. PGBM-001)")
    ap.add_argument("--channels", action="store_true",
                    help="medseg and nnU-Net read T1post, FLAIR and T2 as channels (PGBM; studies lacking one are "
                         "quarantined by medseg ingest)")
    ap.add_argument("--repeats", type=int, default=1, help="train every model N times (seeds seed..seed+N-1)")
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--np", type=int, default=2, help="processes of nnU-Net preprocessing")
    ap.add_argument("--nnunet-workers", type=int, default=1,
                    help="nnU-Net augmentation worker processes (nnUNet_n_proc_DA, >= 1)")
    ap.add_argument("--nnunet-venv", type=Path, default=Path("/tmp/nnunet-venv"))
    ap.add_argument("--no-tta", dest="tta", action="store_false",
                    help="predict without mirror test-time augmentation (default: mirrored, nnU-Net's default)")
    ap.add_argument("--recipe", type=Path, default=None,
                    help="medseg config file to start from (default: configs/cpu.yaml on a CPU, built-in defaults "
                         "on CUDA)")
    ap.add_argument("--set", action="append", default=[], help="medseg config override, e.g. train.batch_size=4")
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--keep", action="store_true", help="keep the work folder")
    ap.add_argument("--reuse", action="store_true",
                    help="with --workdir: re-use finished medseg predictions and nnU-Net's final checkpoints")
    ap.add_argument("--json", type=Path, default=None, help="also write every metric row and run row here")
    ap.add_argument("--child", choices=["medseg"], default=None, help=argparse.SUPPRESS)
    ap.add_argument("--family", default="cnn", help=argparse.SUPPRESS)
    ap.add_argument("--ws", type=Path, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--test-ws", type=Path, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        import torch

        torch.set_num_threads(args.threads)
        child_medseg(args)
        return
    if args.repeats < 1:
        raise SystemExit("--repeats must be >= 1")
    args.configs = [c.strip() for c in args.nnunet_configs.split(",") if c.strip()]

    own = args.workdir is None
    base = Path(tempfile.mkdtemp(prefix="medseg-bench-quality-")) if own else args.workdir
    base.mkdir(parents=True, exist_ok=True)
    folds = make_folds(args.dataset, args.train, args.test, base, args.test_cases, args.split_seed, args.folds,
                       args.patients)
    all_rows: list[dict[str, Any]] = []
    all_runs: list[dict[str, Any]] = []
    try:
        for fold in folds:
            rows, runs = run_fold(fold, args, base)
            all_rows += rows
            all_runs += runs
    finally:
        if own and not args.keep:
            shutil.rmtree(base, ignore_errors=True)
    if args.json:
        args.json.write_text(json.dumps({"rows": all_rows, "runs": all_runs}, indent=1,
                                        default=lambda v: None if isinstance(v, float) and math.isnan(v) else v))
    print_report(all_rows, all_runs, args, folds)


if __name__ == "__main__":
    main()
