"""Segmentation quality at an equal wall-clock training budget: medseg CNN and GAN vs nnU-Net v2 3d_fullres.

For each fold (``--train`` / ``--test`` given once; by default the 4 labeled PGBM studies of
``../shared/data/real/tcia-brain-tumor-progression``, leave-one-study-out):

1. medseg ingests the ``--train`` and ``--test`` DICOM studies (mask series become ``gt`` labels) and
   preprocesses the labeled training cases (its own plan: 2D for these 6.5 mm-slice MR studies).
2. The labeled training cases are exported as NIfTI in nnU-Net's raw format
   (``DatasetNNN_MedsegQualityK/imagesTr/case_XXX_0000.nii.gz``, ``labelsTr``, ``imagesTs``,
   ``dataset.json``), and ``nnUNetv2_plan_and_preprocess -c 3d_fullres`` preprocesses them its own way.
3. Training, each in its own child process with the same budget of ``--minutes`` of training wall
   clock, on all training cases: medseg CNN and medseg GAN (``train.max_minutes``; the poly LR
   anneals over the budget; validation on the training cases), and nnU-Net's default
   ``nnUNetTrainer`` 3d_fullres on fold ``all`` through a subclass (written to a temp folder, run by
   the nnU-Net venv) that only adds the time limit — it stops mid-epoch when the budget is spent,
   anneals its poly LR over the budget instead of 1000 epochs, and runs 5 instead of 50 pseudo-validation
   batches per epoch (they only feed nnU-Net's logging) — and keeps its final weights.
4. Both predict the ``--test`` studies (Gaussian sliding window, overlap 0.5, no mirroring), and
   Dice / HD95 (mm) of the foreground are computed on the native DICOM grid against the mask series.

The preprocessing steps and prediction are timed too but are not part of the budget.

Usage::

    python bench/quality.py [--train DIR ... --test DIR ...] [--minutes 3] [--folds N]
                            [--tools cnn,gan,nnunet] [--device auto|cpu|cuda] [--workdir DIR]
                            [--nnunet-venv /tmp/nnunet-venv] [--set train.batch_size=4 ...] [--reuse]

Ends with ``RESULT medseg_dice=... gan_dice=... nnunet_dice=...`` (mean foreground Dice over all
test studies of all folds).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

PGBM = (REPO.parent / "shared" / "data" / "real" / "tcia-brain-tumor-progression").resolve()
DATASET_BASE_ID = 560
FAMILIES = ("cnn", "gan")

NNUNET_DRIVER = r'''
"""nnU-Net v2 3d_fullres, fold "all", with a wall-clock training budget; then predicts the test images."""
import json, os, sys, time
import torch
from batchgenerators.utilities.file_and_folder_operations import join, load_json
from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
from nnunetv2.paths import nnUNet_preprocessed
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

dataset, budget_s, device_name, test_dir, out_dir = sys.argv[1], float(sys.argv[2]), *sys.argv[3:6]


class nnUNetTrainerTimeBudget(nnUNetTrainer):
    """nnUNetTrainer that stops after ``budget_s`` seconds of training (mid-epoch) and anneals its poly LR
    over that budget; 5 pseudo-validation batches per epoch instead of 50 (logging only)."""

    def __init__(self, plans, configuration, fold, dataset_json, device=torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.num_val_iterations_per_epoch = 5
        self.budget_s = budget_s
        self.iterations_done = 0

    def _fraction(self):
        return min(1.0, (time.time() - self._t0) / self.budget_s)

    def on_train_epoch_start(self):
        super().on_train_epoch_start()
        lr = self.initial_lr * (1 - self._fraction()) ** 0.9
        for group in self.optimizer.param_groups:
            group["lr"] = lr

    def run_training(self):
        self._t0 = time.time()
        self.on_train_start()
        while self.current_epoch < self.num_epochs and time.time() - self._t0 < self.budget_s:
            self.on_epoch_start()
            self.on_train_epoch_start()
            outputs = []
            for _ in range(self.num_iterations_per_epoch):
                if time.time() - self._t0 >= self.budget_s:
                    break
                outputs.append(self.train_step(next(self.dataloader_train)))
            self.iterations_done += len(outputs)
            if not outputs:
                break
            self.on_train_epoch_end(outputs)
            with torch.no_grad():
                self.on_validation_epoch_start()
                val = [self.validation_step(next(self.dataloader_val))
                       for _ in range(self.num_val_iterations_per_epoch)]
                self.on_validation_epoch_end(val)
            self.on_epoch_end()
        self.train_seconds = time.time() - self._t0
        self.on_train_end()


device = torch.device(device_name)
pre = join(nnUNet_preprocessed, dataset)
plans = load_json(join(pre, "nnUNetPlans.json"))
plans["continue_training"] = False  # what nnunetv2.run.run_training adds (nnU-Net >= 2.7)
trainer = nnUNetTrainerTimeBudget(plans=plans, configuration="3d_fullres",
                                  fold="all", dataset_json=load_json(join(pre, "dataset.json")), device=device)
final = join(trainer.output_folder, "checkpoint_final.pth")
if len(sys.argv) > 6 and sys.argv[6] == "reuse" and os.path.isfile(final):  # --reuse: predict only
    trainer.initialize()
    trainer.load_checkpoint(final)
    trainer.train_seconds = float("nan")
else:
    trainer.run_training()
t0 = time.time()
trainer.set_deep_supervision_enabled(False)  # as nnUNetTrainer.perform_actual_validation
trainer.network.eval()
predictor = nnUNetPredictor(tile_step_size=0.5, use_gaussian=True, use_mirroring=False,
                            perform_everything_on_device=device.type == "cuda", device=device, allow_tqdm=False)
predictor.manual_initialization(trainer.network, trainer.plans_manager, trainer.configuration_manager,
                                [trainer.network.state_dict()], trainer.dataset_json, type(trainer).__name__,
                                trainer.inference_allowed_mirroring_axes)
images = sorted(f for f in os.listdir(test_dir) if f.endswith("_0000.nii.gz"))
predictor.predict_from_files_sequential([[join(test_dir, f)] for f in images],
                                        [join(out_dir, f[: -len("_0000.nii.gz")]) for f in images],
                                        save_probabilities=False, overwrite=True)
info = {"epochs": trainer.current_epoch, "iterations": trainer.iterations_done, "train_s": trainer.train_seconds,
        "predict_s": time.time() - t0, "patch_size": list(trainer.configuration_manager.patch_size),
        "batch_size": trainer.configuration_manager.batch_size, "spacing": list(trainer.configuration_manager.spacing)}
print("BENCHJSON " + json.dumps(info), flush=True)
'''


@dataclass
class Fold:
    """One train/test split of study folders."""

    index: int
    train: list[Path]
    test: list[Path]


def pgbm_studies(root: Path) -> list[Path]:
    """The study folders (``PGBM-xxx/<study>``) of the TCIA Brain-Tumor-Progression data."""
    studies = sorted(p for patient in sorted(root.glob("PGBM-*")) for p in patient.iterdir() if p.is_dir())
    if not studies:
        raise SystemExit(f"no PGBM studies under {root}; pass --train DIR ... --test DIR ...")
    return studies


def make_folds(args: argparse.Namespace) -> list[Fold]:
    if args.train or args.test:
        if not (args.train and args.test):
            raise SystemExit("give both --train and --test (or neither for the PGBM leave-one-study-out default)")
        return [Fold(0, [Path(p).resolve() for p in args.train], [Path(p).resolve() for p in args.test])]
    studies = pgbm_studies(PGBM)
    folds = [Fold(i, [s for s in studies if s != t], [t]) for i, t in enumerate(studies)]
    return folds[: args.folds] if args.folds else folds


# --- medseg side ---------------------------------------------------------------------------------------


def medseg_config(args: argparse.Namespace, workspace: Path) -> Any:
    from medseg.config_loader import load_config

    overrides = [
        f"workspace={workspace}",
        f"seed={args.seed}",
        f"train.max_minutes={args.minutes}",
        "train.max_epochs=100000",
        "train.iterations_per_epoch=50",
        "train.val_every=5",
        f"train.device={args.device}",
        "split.test_fraction=0.0",
        "split.val_fraction=0.0",  # all training cases train (as nnU-Net's fold 'all'); validation on them
        *args.set,
    ]
    return load_config(None, overrides)


def labeled_cases(ws: Any) -> list[Any]:
    from medseg.io.catalog import Catalog

    return [c for c in Catalog(ws.catalog_path).cases() if c.has_labels]


def prepare_medseg(fold: Fold, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Ingest train/test studies, preprocess the training cases; returns timings and case lists."""
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
        pred = predict_volume(bundle, vol.image, vol.geometry, cfg.infer, device)
        np.save(out / f"{case.case_id}.npy", pred)
    plan = Plan.load(ws.plan_path)
    info = {"epochs": result.epochs, "iterations": result.iterations, "train_s": result.seconds,
            "predict_s": time.perf_counter() - t0, "stopped": result.stopped_reason,
            "patch_size": list(plan.patch_size), "spatial_dims": plan.spatial_dims,
            "batch_size": cfg.train.batch_size, "spacing": list(plan.target_spacing)}
    print("BENCHJSON " + json.dumps(info), flush=True)


# --- nnU-Net side ----------------------------------------------------------------------------------------


def export_nnunet(prep: dict[str, Any], raw: Path, dataset: str) -> dict[str, str]:
    """Write the nnU-Net raw dataset; returns ``{test case_id: nnU-Net test name}``."""
    from medseg.ingest.export import export_nifti

    root = raw / dataset
    for sub in ("imagesTr", "labelsTr", "imagesTs"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    names: dict[int, str] = {}
    for i, case in enumerate(prep["train"]):
        export_nifti(prep["ws"], case.case_id, root / "imagesTr" / f"case_{i:03d}_0000.nii.gz")
        export_nifti(prep["ws"], case.case_id, root / "labelsTr" / f"case_{i:03d}.nii.gz", label="gt")
        names.update({int(k): str(v) for k, v in case.label_names.items()})
    test_names = {}
    for i, case in enumerate(prep["test"]):
        export_nifti(prep["ws_test"], case.case_id, root / "imagesTs" / f"test_{i:03d}_0000.nii.gz")
        test_names[case.case_id] = f"test_{i:03d}"
    labels = {"background": 0, **{names.get(k, f"class_{k}"): k for k in sorted(names or {1: "foreground"})}}
    modality = "CT" if str(getattr(prep["train"][0], "modality", "MR")).upper() == "CT" else "MRI"
    (root / "dataset.json").write_text(json.dumps({
        "channel_names": {"0": modality}, "labels": labels, "numTraining": len(prep["train"]),
        "file_ending": ".nii.gz", "name": dataset,
    }, indent=2))
    return test_names


def nnunet_env(work: Path, args: argparse.Namespace) -> dict[str, str]:
    return {
        **os.environ,
        "nnUNet_raw": str(work / "nnUNet_raw"),
        "nnUNet_preprocessed": str(work / "nnUNet_preprocessed"),
        "nnUNet_results": str(work / "nnUNet_results"),
        "nnUNet_compile": "f",
        "nnUNet_n_proc_DA": str(max(1, args.nnunet_workers)),
        "nnUNet_def_n_proc": str(args.np),
        "OMP_NUM_THREADS": str(args.threads),
        "PYTHONPATH": "",
    }


# --- evaluation -----------------------------------------------------------------------------------------


def evaluate(pred: np.ndarray, gt: np.ndarray, spacing: tuple[float, float, float]) -> dict[str, float]:
    from medseg.evaluation.metrics import dice, hd95

    p, g = pred > 0, gt > 0
    return {"dice": float(dice(p, g)), "hd95": float(hd95(p, g, spacing))}


def _fmt(v: float) -> str:
    return "nan" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.3f}" if v < 10 else f"{v:.1f}"


def run_fold(fold: Fold, args: argparse.Namespace, base: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    from _measure import run_measured

    from medseg.io.volume_store import read_case

    work = base / f"fold{fold.index}"
    print(f"\n== fold {fold.index}: train {[p.name for p in fold.train]} -> test {[p.name for p in fold.test]}",
          flush=True)
    prep = prepare_medseg(fold, work, args)
    tools = [t.strip() for t in args.tools.split(",") if t.strip()]
    runs: dict[str, Any] = {"ingest_s": prep["ingest_s"], "medseg_preprocess_s": prep["preprocess_s"]}
    preds: dict[str, dict[str, np.ndarray]] = {}
    child_env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": str(args.threads)}
    budget_timeout = args.minutes * 60 * 3 + 1800
    for family in [t for t in tools if t in FAMILIES]:
        out = work / f"pred_{family}"
        if args.reuse and all((out / f"{c.case_id}.npy").is_file() for c in prep["test"]):
            runs[family] = {"reused": True}
            preds[family] = {c.case_id: np.load(out / f"{c.case_id}.npy") for c in prep["test"]}
            continue
        cmd = [sys.executable, str(Path(__file__).resolve()), "--child", "medseg", "--family", family,
               "--ws", str(prep["ws"].root), "--test-ws", str(prep["ws_test"].root), "--out", str(out),
               "--minutes", str(args.minutes), "--device", args.device, "--seed", str(args.seed),
               *[a for s in args.set for a in ("--set", s)]]
        m = run_measured(family, cmd, env=child_env, timeout=budget_timeout, cwd=REPO)
        if not m.ok:
            raise SystemExit(f"medseg {family} failed (rc {m.rc}):\n{m.log_tail}")
        runs[family] = {**m.info, "wall_s": m.wall_s, "rss_mib": m.rss_tree_mib}
        preds[family] = {c.case_id: np.load(out / f"{c.case_id}.npy") for c in prep["test"]}
    if "nnunet" in tools:
        exe = args.nnunet_venv / "bin" / "nnUNetv2_plan_and_preprocess"
        if not exe.is_file():
            raise SystemExit(f"{exe} not found: create the nnU-Net venv (see bench/preprocess.py) or drop "
                             "nnunet from --tools")
        did = DATASET_BASE_ID + fold.index
        dataset = f"Dataset{did:03d}_MedsegQuality{fold.index}"
        test_names = export_nnunet(prep, work / "nnUNet_raw", dataset)
        env = nnunet_env(work, args)
        if not (args.reuse and (work / "nnUNet_preprocessed" / dataset / "nnUNetPlans.json").is_file()):
            m = run_measured("nnunet-preprocess", [str(exe), "-d", str(did), "-c", "3d_fullres", "-np",
                                                   str(args.np), "-npfp", str(args.np)], env=env, timeout=3600,
                             cwd=work)
            if not m.ok:
                raise SystemExit(f"nnUNetv2_plan_and_preprocess failed (rc {m.rc}):\n{m.log_tail}")
            runs["nnunet_preprocess_s"] = m.wall_s
        driver = work / "nnunet_budget_driver.py"
        driver.write_text(NNUNET_DRIVER)
        out = work / "pred_nnunet"
        out.mkdir(exist_ok=True)
        import torch

        device = args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
        m = run_measured("nnunet", [str(args.nnunet_venv / "bin" / "python"), str(driver), dataset,
                                    str(args.minutes * 60), device, str(work / "nnUNet_raw" / dataset / "imagesTs"),
                                    str(out), *(["reuse"] if args.reuse else [])], env=env,
                         timeout=budget_timeout, cwd=work)
        if not m.ok:
            raise SystemExit(f"nnU-Net training/prediction failed (rc {m.rc}):\n{m.log_tail}")
        runs["nnunet"] = {**m.info, "wall_s": m.wall_s, "rss_mib": m.rss_tree_mib}
        import nibabel as nib

        preds["nnunet"] = {
            cid: np.asarray(nib.load(str(out / f"{name}.nii.gz")).dataobj).transpose(2, 1, 0)  # type: ignore[attr-defined]
            for cid, name in test_names.items()
        }
    rows = []
    for case in prep["test"]:
        vol = read_case(case.volume_path)
        gt = vol.labels["gt"]
        spacing = tuple(float(s) for s in vol.geometry.spacing)
        for tool, by_case in preds.items():
            pred = by_case[case.case_id]
            if pred.shape != gt.shape:
                raise SystemExit(f"{tool} prediction of {case.case_id} has shape {pred.shape}, reference {gt.shape}")
            rows.append({"fold": fold.index, "study": fold.test[0].name if len(fold.test) == 1 else case.case_id,
                         "case": case.case_id, "tool": tool, **evaluate(pred, gt, spacing)})  # type: ignore[arg-type]
    return rows, runs


TOOL_NAMES = {"cnn": "medseg CNN", "gan": "medseg GAN", "nnunet": "nnU-Net 3d_fullres"}


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    ap.add_argument("--train", nargs="+", default=None, help="labeled DICOM study folders to train on")
    ap.add_argument("--test", nargs="+", default=None, help="labeled DICOM study folders to test on")
    ap.add_argument("--minutes", type=float, default=3.0, help="training wall-clock budget per model")
    ap.add_argument("--folds", type=int, default=0, help="run only the first N default folds (0 = all)")
    ap.add_argument("--tools", default="cnn,gan,nnunet")
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--np", type=int, default=2, help="processes of nnU-Net preprocessing")
    ap.add_argument("--nnunet-workers", type=int, default=1,
                    help="nnU-Net augmentation worker processes (nnUNet_n_proc_DA, >= 1)")
    ap.add_argument("--nnunet-venv", type=Path, default=Path("/tmp/nnunet-venv"))
    ap.add_argument("--set", action="append", default=[], help="medseg config override, e.g. train.batch_size=4")
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--keep", action="store_true", help="keep the work folder")
    ap.add_argument("--reuse", action="store_true",
                    help="with --workdir: re-use finished medseg predictions and nnU-Net's final checkpoint")
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

    folds = make_folds(args)
    own = args.workdir is None
    base = Path(tempfile.mkdtemp(prefix="medseg-bench-quality-")) if own else args.workdir
    base.mkdir(parents=True, exist_ok=True)
    all_rows: list[dict[str, Any]] = []
    all_runs: list[dict[str, Any]] = []
    try:
        for fold in folds:
            rows, runs = run_fold(fold, args, base)
            all_rows += rows
            all_runs.append(runs)
    finally:
        if own and not args.keep:
            shutil.rmtree(base, ignore_errors=True)

    tools = [t for t in ("cnn", "gan", "nnunet") if any(r["tool"] == t for r in all_rows)]
    print(f"\nTraining budget {args.minutes} min per model per fold; {len(folds)} fold(s)")
    print(f"{'fold':<5} {'test study':<42} " + " ".join(f"{TOOL_NAMES[t] + ' Dice/HD95':>30}" for t in tools))
    for fold in sorted({r["fold"] for r in all_rows}):
        for case in sorted({r["case"] for r in all_rows if r["fold"] == fold}):
            cells = []
            study = ""
            for t in tools:
                r = next(r for r in all_rows if r["fold"] == fold and r["case"] == case and r["tool"] == t)
                study = r["study"]
                cells.append(f"{_fmt(r['dice']) + ' / ' + _fmt(r['hd95']) + ' mm':>30}")
            print(f"{fold:<5} {study[:42]:<42} " + " ".join(cells))
    means: dict[str, float] = {}
    for t in tools:
        d = [r["dice"] for r in all_rows if r["tool"] == t]
        h = [r["hd95"] for r in all_rows if r["tool"] == t and math.isfinite(r["hd95"])]
        means[t] = float(np.nanmean(d)) if d else float("nan")
        means[t + "_hd95"] = float(np.mean(h)) if h else float("nan")
    print(f"{'mean':<48} " + " ".join(f"{_fmt(means[t]) + ' / ' + _fmt(means[t + '_hd95']) + ' mm':>30}"
                                      for t in tools))
    print("\nTraining runs (per fold): epochs / iterations / training s / prediction s / patch / batch")
    for i, runs in enumerate(all_runs):
        for t in tools:
            r = runs.get(t, {})
            print(f"fold {i} {TOOL_NAMES[t]:<20} {r.get('epochs')} / {r.get('iterations')} / "
                  f"{_fmt(r.get('train_s', float('nan')))} / {_fmt(r.get('predict_s', float('nan')))} / "
                  f"{r.get('patch_size')} / {r.get('batch_size')}")
        pre = f"medseg ingest {runs['ingest_s']:.1f} s, medseg preprocess {runs['medseg_preprocess_s']:.1f} s"
        if "nnunet_preprocess_s" in runs:
            pre += f", nnUNetv2_plan_and_preprocess {runs['nnunet_preprocess_s']:.1f} s"
        print(f"fold {i} {pre}")
    keys = {"cnn": "medseg_dice", "gan": "gan_dice", "nnunet": "nnunet_dice"}
    print("RESULT " + " ".join(f"{keys[t]}={means.get(t, float('nan')):.4f}" for t in ("cnn", "gan", "nnunet")))


if __name__ == "__main__":
    main()
