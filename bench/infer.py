"""Benchmark batch inference: medseg vs nnU-Net v2's predictor vs a plain MONAI sliding-window loop.

Same network and weights for all three (``bench/_infer_net.py``: a plain conv U-Net, random but
fixed weights), same patch, overlap 0.5 (nnU-Net ``tile_step_size=0.5``), Gaussian blending, no
mirroring TTA, same target spacing and CT normalisation (clip to p0.5/p99.5, z-score).

Dataset: ``--cases`` synthetic CT volumes (body ellipse, organ, lesion; int16 HU) of
``--slices`` x ``--size`` x ``--size`` voxels at (2.0, 0.8, 0.8) mm, written once as NIfTI.
Target spacing (2.0, 1.0, 1.0) mm, so every tool resamples in and back out.

Each tool runs as a child process that reads the NIfTI files, predicts and writes label NIfTIs:

* ``medseg``: ``medseg.inference.predict.predict_volume`` (slab-streamed sliding window, logits
  interpolated to the native grid plane by plane);
* ``nnunet``: ``nnUNetPredictor.predict_from_files`` in its own venv (``--nnunet-venv``), from a
  model folder written here (plans.json, dataset.json, fold_all/checkpoint_final.pth) whose
  ``network_class_name`` is ``_infer_net.BenchUNet`` (bench/ on PYTHONPATH);
* ``monai``: medseg's preprocessing, ``monai.inferers.sliding_window_inference`` over the whole
  volume, full logits resampled to the native grid class by class, argmax (what a plain loop does).

Per tool: seconds per volume (inside the child, mean over volumes, I/O included), process wall
time, peak RSS of the process tree (``bench/_measure.py``), and voxel agreement of its labels with
medseg's. ``--device cuda`` runs the same on a GPU (bf16 autocast for medseg). Where medseg runs bf16
(a GPU, a CPU with AMX / AVX512-BF16) a ``medseg-fp32`` row is measured beside it, so both machine
classes are in the table; the CPU model and each row's precision are printed.

Usage::

    python bench/infer.py [--cases 4] [--slices 150] [--size 256] [--threads 2] [--device cpu]
                          [--workdir DIR] [--nnunet-venv /tmp/nnunet-venv] [--tools medseg,nnunet,monai]

Ends with ``RESULT medseg_s=... nnunet_s=... monai_s=... ratio=... precision=... medseg_fp32_s=... ratio_fp32=...``
(ratio = medseg / nnU-Net seconds per volume; target <= 0.67).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
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
PATCH = (32, 128, 128)
FEATURES = (8, 16, 32, 64)
CLIP = (-200.0, 300.0)
MEAN, STD = 60.0, 80.0
LABELS = {"background": 0, "organ": 1, "lesion": 2}


# --- dataset and shared model ---------------------------------------------------------------------


def write_dataset(raw: Path, cases: int, slices: int, size: int) -> list[Path]:
    """Synthetic CT NIfTIs ``case_XXXX_0000.nii.gz`` (int16, axial, RAS affine of the LPS grid)."""
    import nibabel as nib

    raw.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(cases):
        hu, organ = synthetic_ct(i, slices, size)
        affine = np.diag([-NATIVE_SPACING[2], -NATIVE_SPACING[1], NATIVE_SPACING[0], 1.0])
        path = raw / f"case_{i:04d}_0000.nii.gz"
        nib.save(nib.Nifti1Image(np.ascontiguousarray(hu.transpose(2, 1, 0)), affine), str(path))
        paths.append(path)
    return paths


def write_model(model_dir: Path) -> Path:
    """Random fixed weights (``weights.pt``) + an nnU-Net v2 model folder using them."""
    import torch
    from _infer_net import BenchUNet

    torch.manual_seed(0)
    net = BenchUNet(1, 3, FEATURES)
    state = net.state_dict()
    model_dir.mkdir(parents=True, exist_ok=True)
    torch.save(state, model_dir / "weights.pt")
    (model_dir / "fold_all").mkdir(exist_ok=True)
    torch.save({"network_weights": state, "trainer_name": "nnUNetTrainer",
                "init_args": {"configuration": "3d_fullres"}, "inference_allowed_mirroring_axes": (0, 1, 2)},
               model_dir / "fold_all" / "checkpoint_final.pth")
    (model_dir / "dataset.json").write_text(json.dumps(
        {"channel_names": {"0": "CT"}, "labels": LABELS, "numTraining": 1, "file_ending": ".nii.gz"}))
    resampling = {"is_seg": False, "order": 3, "order_z": 0, "force_separate_z": None}
    plans = {
        "dataset_name": "Dataset502_MedsegInferBench", "plans_name": "nnUNetPlans",
        "original_median_spacing_after_transp": list(NATIVE_SPACING),
        "original_median_shape_after_transp": [150, 256, 256],
        "image_reader_writer": "SimpleITKIO", "transpose_forward": [0, 1, 2], "transpose_backward": [0, 1, 2],
        "experiment_planner_used": "ExperimentPlanner", "label_manager": "LabelManager",
        "foreground_intensity_properties_per_channel": {"0": {
            "max": 400.0, "mean": MEAN, "median": MEAN, "min": -1000.0,
            "percentile_00_5": CLIP[0], "percentile_99_5": CLIP[1], "std": STD}},
        "configurations": {"3d_fullres": {
            "data_identifier": "nnUNetPlans_3d_fullres", "preprocessor_name": "DefaultPreprocessor",
            "batch_size": 2, "patch_size": list(PATCH), "median_image_size_in_voxels": [150, 205, 205],
            "spacing": list(TARGET_SPACING), "normalization_schemes": ["CTNormalization"], "use_mask_for_norm": [False],
            "resampling_fn_data": "resample_data_or_seg_to_shape", "resampling_fn_data_kwargs": resampling,
            "resampling_fn_seg": "resample_data_or_seg_to_shape",
            "resampling_fn_seg_kwargs": {**resampling, "is_seg": True, "order": 1},
            "resampling_fn_probabilities": "resample_data_or_seg_to_shape",
            "resampling_fn_probabilities_kwargs": {**resampling, "order": 1},
            "architecture": {"network_class_name": "_infer_net.BenchUNet",
                             "arch_kwargs": {"features": list(FEATURES)}, "_kw_requires_import": []},
            "batch_dice": True}},
    }
    (model_dir / "plans.json").write_text(json.dumps(plans, indent=1))
    return model_dir


# --- children -------------------------------------------------------------------------------------


def _medseg_plan() -> Any:
    from medseg.plan import Normalization, Plan

    return Plan(modality="CT", normalization=Normalization.CT, clip_range=CLIP, intensity_mean=MEAN,
                intensity_std=STD, target_spacing=TARGET_SPACING, median_shape=(150, 205, 205), patch_size=PATCH,
                kernel_sizes=[[3, 3, 3]] * 4, strides=[[1, 1, 1]] + [[2, 2, 2]] * 3, filters=list(FEATURES),
                num_classes=3, label_names={1: "organ", 2: "lesion"})


def _load_net(model_dir: Path, device: str) -> Any:
    import torch
    from _infer_net import BenchUNet

    net = BenchUNet(1, 3, FEATURES)
    net.load_state_dict(torch.load(model_dir / "weights.pt", weights_only=True))
    return net.eval().to(device)


def child_medseg(cases: list[Path], out: Path, model_dir: Path, device: str, batch: int,
                 precision: str = "auto") -> dict[str, Any]:
    from medseg.config import InferConfig
    from medseg.inference.predict import predict_volume
    from medseg.io.nifti import read_nifti, write_nifti
    from medseg.training.bundle import ModelBundle

    bundle = ModelBundle(path=model_dir, family="cnn", version="bench", plan=_medseg_plan(),
                         network=_load_net(model_dir, device), metadata={})
    cfg = InferConfig(overlap=0.5, sw_batch_size=batch, mirror_tta=False, precision=precision)  # type: ignore[arg-type]
    times = []
    for f in cases:
        t0 = time.perf_counter()
        image, geometry = read_nifti(f)
        label = predict_volume(bundle, image, geometry, cfg, device, spill_dir=out)
        write_nifti(out / f.name.replace("_0000.nii.gz", ".nii.gz"), label, geometry)
        times.append(time.perf_counter() - t0)
    return {"seconds": times}


def child_monai(cases: list[Path], out: Path, model_dir: Path, device: str, batch: int) -> dict[str, Any]:
    import torch
    from monai.inferers import sliding_window_inference

    from medseg.io.nifti import read_nifti, write_nifti
    from medseg.preprocess.case import preprocess_image, restore_probabilities_to_native

    plan, net = _medseg_plan(), _load_net(model_dir, device)
    times = []
    for f in cases:
        t0 = time.perf_counter()
        image, geometry = read_nifti(f)
        pre = preprocess_image(image, geometry, plan)
        x = torch.from_numpy(pre.data)[None, None].to(device)
        with torch.inference_mode():
            logits = sliding_window_inference(x, PATCH, batch, net, overlap=0.5, mode="gaussian", sigma_scale=0.125)
        assert isinstance(logits, torch.Tensor)
        native = restore_probabilities_to_native(logits[0].float().cpu().numpy(), pre)
        write_nifti(out / f.name.replace("_0000.nii.gz", ".nii.gz"), native.argmax(axis=0).astype(np.uint8), geometry)
        times.append(time.perf_counter() - t0)
    return {"seconds": times}


def child_nnunet(cases: list[Path], out: Path, model_dir: Path, device: str, batch: int) -> dict[str, Any]:
    import torch
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    predictor = nnUNetPredictor(tile_step_size=0.5, use_gaussian=True, use_mirroring=False,
                                perform_everything_on_device=device == "cuda", device=torch.device(device),
                                verbose=False, allow_tqdm=False)
    predictor.initialize_from_trained_model_folder(str(model_dir), use_folds=("all",))
    t0 = time.perf_counter()
    predictor.predict_from_files([[str(f)] for f in cases], str(out), save_probabilities=False, overwrite=True,
                                 num_processes_preprocessing=1, num_processes_segmentation_export=1)
    total = time.perf_counter() - t0
    return {"seconds": [total / len(cases)] * len(cases)}


def child_medseg_fp32(cases: list[Path], out: Path, model_dir: Path, device: str, batch: int) -> dict[str, Any]:
    """medseg forced to fp32: the row of CPUs without bf16 units, measured beside the bf16 one."""
    return child_medseg(cases, out, model_dir, device, batch, precision="fp32")


CHILDREN = {"medseg": child_medseg, "medseg-fp32": child_medseg_fp32, "monai": child_monai, "nnunet": child_nnunet}


def run_child(args: argparse.Namespace) -> None:
    import torch

    torch.set_num_threads(args.threads)
    cases = sorted(Path(args.raw).glob("*_0000.nii.gz"))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    info = CHILDREN[args.child](cases, out, Path(args.model), args.device, args.batch)
    print("BENCHJSON " + json.dumps(info))


# --- driver -----------------------------------------------------------------------------------------


def _agreement(a: Path, b: Path) -> float:
    from medseg.io.nifti import read_nifti

    fa, fb = sorted(a.glob("case_*.nii.gz")), sorted(b.glob("case_*.nii.gz"))
    if not fa or len(fa) != len(fb):
        return float("nan")
    same = total = 0
    for x, y in zip(fa, fb, strict=True):
        ax, ay = read_nifti(x)[0], read_nifti(y)[0]
        same += int((ax == ay).sum())
        total += ax.size
    return same / total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cases", type=int, default=4)
    ap.add_argument("--slices", type=int, default=150)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=2, help="windows per network call (medseg, MONAI)")
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--nnunet-venv", default="/tmp/nnunet-venv")
    ap.add_argument("--tools", default="medseg,nnunet,monai")
    ap.add_argument("--timeout", type=float, default=3600)
    ap.add_argument("--child", choices=sorted(CHILDREN), help=argparse.SUPPRESS)
    ap.add_argument("--raw", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    ap.add_argument("--model", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        run_child(args)
        return

    import torch

    from bench._measure import Measured, run_measured
    from medseg.hardware import cpu_model
    from medseg.inference.precision import uses_bf16

    bf16 = uses_bf16(torch.device(args.device), "auto")
    tools = [t.strip() for t in args.tools.split(",") if t.strip()]
    if bf16 and "medseg" in tools and "medseg-fp32" not in tools:
        tools.insert(tools.index("medseg") + 1, "medseg-fp32")  # the fp32 machine class beside the bf16 one
    where = f"GPU {torch.cuda.get_device_name()}" if args.device == "cuda" else f"CPU {cpu_model()}"
    work = Path(args.workdir or tempfile.mkdtemp(prefix="medseg-bench-infer-"))
    raw, model = work / "raw", work / "model"
    if not raw.is_dir() or len(list(raw.glob("*.nii.gz"))) != args.cases:
        shutil.rmtree(raw, ignore_errors=True)
        write_dataset(raw, args.cases, args.slices, args.size)
    write_model(model)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(BENCH), str(REPO)]), "OMP_NUM_THREADS": str(args.threads),
           "nnUNet_def_n_proc": str(args.threads), "nnUNet_raw": str(work / "nnunet_raw"),
           "nnUNet_preprocessed": str(work / "nnunet_pre"), "nnUNet_results": str(work / "nnunet_res")}
    results: dict[str, Measured] = {}
    for tool in tools:
        python = str(Path(args.nnunet_venv) / "bin" / "python") if tool == "nnunet" else sys.executable
        out = work / f"out_{tool}"
        shutil.rmtree(out, ignore_errors=True)
        cmd = [python, str(Path(__file__).resolve()), "--child", tool, "--raw", str(raw), "--out", str(out),
               "--model", str(model), "--device", args.device, "--threads", str(args.threads),
               "--batch", str(args.batch)]
        results[tool] = run_measured(tool, cmd, env=env, timeout=args.timeout, cwd=REPO)
        if not results[tool].ok:
            print(f"{tool} failed (rc={results[tool].rc}):\n{results[tool].log_tail}", file=sys.stderr)

    per_volume = {t: float(np.mean(m.info["seconds"])) if m.ok and m.info.get("seconds") else float("nan")
                  for t, m in results.items()}
    print(f"\n{args.cases} volumes {args.slices}x{args.size}x{args.size} int16 at {NATIVE_SPACING} mm -> "
          f"{TARGET_SPACING} mm, patch {PATCH}, overlap 0.5, no TTA, {where}, {args.threads} threads\n")
    print(f"{'tool':<12} {'precision':<9} {'s/volume':>9} {'wall s':>8} {'peak RSS tree MiB':>18} "
          f"{'peak RSS max MiB':>17} {'agree w/ medseg':>16}")
    for t, m in results.items():
        precision = "bf16" if t == "medseg" and bf16 else "fp32"
        agree = _agreement(work / "out_medseg", work / f"out_{t}") if "medseg" in results else float("nan")
        print(f"{t:<12} {precision:<9} {per_volume[t]:>9.2f} {m.wall_s:>8.1f} {m.rss_tree_mib:>18.0f} "
              f"{m.rss_max_mib:>17.0f} {agree:>16.4f}")
    if not bf16:
        print("medseg bf16: n/a (no bf16 units, AMX / AVX512-BF16, on this CPU: medseg runs fp32 here)")
    nan = float("nan")
    ratio = per_volume.get("medseg", nan) / per_volume.get("nnunet", nan)
    fp32_s = per_volume.get("medseg-fp32", nan) if bf16 else per_volume.get("medseg", nan)
    print(f"\nRESULT medseg_s={per_volume.get('medseg', nan):.2f} nnunet_s={per_volume.get('nnunet', nan):.2f} "
          f"monai_s={per_volume.get('monai', nan):.2f} ratio={ratio:.3f} precision={'bf16' if bf16 else 'fp32'} "
          f"medseg_fp32_s={fp32_s:.2f} ratio_fp32={fp32_s / per_volume.get('nnunet', nan):.3f} device={args.device}")


if __name__ == "__main__":
    main()
