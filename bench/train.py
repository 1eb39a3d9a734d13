"""Benchmark medseg's training step against a bare MONAI training loop (same network, patch, batch).

Data: ``--cases`` synthetic preprocessed case stores (body ellipse, organ ellipsoid, a lesion;
``--shape`` voxels at 3 x 1 x 1 mm, already normalised) written with ``write_case`` plus a plan whose
DynUNet topology is derived from ``--patch`` (kernels/strides as the planner does). Both loops:

* **medseg** — the real data path of ``medseg train``: :class:`~medseg.training.patches.PatchDataset`
  reading the Zarr stores (foreground oversampling + augmentation, on the device with
  ``--gpu-aug``), the loop's DataLoader (:func:`~medseg.training.loop.make_loader`) and
  :class:`~medseg.training.steppers.CnnStepper` (deep-supervised Dice+CE, SGD Nesterov, poly LR,
  gradient clipping, NaN check, bf16 autocast on CUDA and on CPUs with AMX / AVX512-BF16).
* **monai** — a bare loop: ``monai.networks.nets.DynUNet`` with the same arguments,
  ``DeepSupervisionLoss(DiceCELoss)``, the same SGD and clipping, fed from patches cropped once into
  in-memory tensors (no augmentation, no sampler, no DataLoader).

Each loop runs in its own child process (``bench/_measure.py``: wall time, peak RSS) with the same
number of torch threads; ``--warmup`` iterations are discarded, then ``--iters`` are timed.
On CUDA (``--device cuda``) it also reports iterations/s, GPU utilisation (sampled every 100 ms with
``torch.cuda.utilization`` or ``nvidia-smi``), the share of time spent waiting for data, and the
bf16-AMP vs fp32 speed-up, as a second table; on a CPU with bf16 matrix units the bare loop runs in
bf16 too (the same precision as medseg), and the bf16 vs fp32 speed-up of medseg's step is reported.
The CPU model and the precision stand beside every number; the precision table always has a bf16 and
an fp32 row (bf16 "n/a" on CPUs without bf16 units, where medseg trains in fp32).

Usage::

    python bench/train.py [--device cpu|cuda] [--iters 20] [--warmup 3] [--patch 16,64,64] [--batch 2]
                          [--filters 16,32,64,128] [--threads 2] [--workers N] [--compile]
                          [--channels-last] [--gpu-aug] [--workdir DIR]

Ends with ``RESULT medseg_s_per_it=... monai_s_per_it=... cpu_ratio=... precision=... fp32_s_per_it=...``
(plus ``gpu_it_s=... gpu_util=... amp_speedup=...`` on CUDA, ``amp_speedup=...`` on bf16 CPUs).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

SPACING = (3.0, 1.0, 1.0)


# --- data -----------------------------------------------------------------------------------------


def _phantom(shape: tuple[int, int, int], seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Normalised image and label (0 background, 1 organ, 2 lesion) of shape ``(z, y, x)``."""
    rng = np.random.default_rng(seed)
    zz, yy, xx = np.meshgrid(*[(np.arange(n) - (n - 1) / 2) * s for n, s in zip(shape, SPACING, strict=True)],
                             indexing="ij")
    half = np.array(shape) * np.array(SPACING) / 2
    image = np.full(shape, -3.0, np.float32)
    image[(yy / (0.9 * half[1])) ** 2 + (xx / (0.9 * half[2])) ** 2 <= 1] = 0.0
    c = rng.uniform(-0.1, 0.1, 3) * half
    r = np.array([0.6, 0.4, 0.45]) * half
    organ = sum(((g - cc) / rr) ** 2 for g, cc, rr in zip((zz, yy, xx), c, r, strict=True)) <= 1
    label = organ.astype(np.uint8)
    image[organ] = 1.0
    les = sum(((g - cc) / 10.0) ** 2 for g, cc in zip((zz, yy, xx), c, strict=True)) <= 1
    label[les & organ] = 2
    image[les & organ] = -0.5
    image += rng.normal(0, 0.3, shape).astype(np.float32)
    return image, label


def build_workspace(root: Path, cases: int, shape: tuple[int, int, int], patch: tuple[int, int, int],
                    filters: list[int]) -> Path:
    """Write ``cases`` preprocessed stores and a plan for ``patch`` under ``root`` (a medseg workspace)."""
    from medseg.geometry import Geometry
    from medseg.io.volume_store import CaseVolume, write_case
    from medseg.plan import Normalization, Plan
    from medseg.preprocess.topology import topology_for_fixed_patch
    from medseg.splits import Splits
    from medseg.workspace import Workspace

    ws = Workspace.at(root).ensure()
    spatial = SPACING if patch[0] > 1 else SPACING[1:]
    topo = topology_for_fixed_patch(spatial, patch if patch[0] > 1 else patch[1:], max_levels=len(filters))
    dims = 3 if patch[0] > 1 else 2
    plan = Plan(modality="CT", normalization=Normalization.ZSCORE, target_spacing=SPACING, median_shape=shape,
                patch_size=patch, spatial_dims=dims, kernel_sizes=topo.kernel_sizes, strides=topo.strides,
                filters=filters[: len(topo.strides)], num_classes=3, label_names={1: "organ", 2: "lesion"})
    plan.save(ws.plan_path)
    ids = [f"case{i:03d}" for i in range(cases)]
    Splits(train=ids, val=[], test=[]).save(ws.splits_path)
    for i, cid in enumerate(ids):
        image, label = _phantom(shape, i)
        write_case(ws.preprocessed_case_path(cid),
                   CaseVolume(case_id=cid, image=image, geometry=Geometry.create(SPACING, (0.0, 0.0, 0.0)),
                              labels={"gt": label}, label_names={1: "organ", 2: "lesion"}, kind="preprocessed"))
    return root


# --- GPU utilisation ---------------------------------------------------------------------------------


class UtilSampler:
    """Samples GPU utilisation (%) every ``interval`` s in a thread (torch.cuda.utilization / nvidia-smi)."""

    def __init__(self, interval: float = 0.1) -> None:
        self.interval = interval
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _read(self) -> float | None:
        import torch

        try:
            return float(torch.cuda.utilization())
        except Exception:
            pass
        try:
            out = subprocess.run(["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits",
                                  "-i", os.environ.get("CUDA_VISIBLE_DEVICES", "0").split(",")[0]],
                                 capture_output=True, text=True, timeout=5)
            return float(out.stdout.strip().splitlines()[0])
        except Exception:
            return None

    def _run(self) -> None:
        while not self._stop.is_set():
            v = self._read()
            if v is not None:
                self.samples.append(v)
            self._stop.wait(self.interval)

    def __enter__(self) -> UtilSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    @property
    def mean(self) -> float | None:
        return float(statistics.fmean(self.samples)) if self.samples else None


# --- children ---------------------------------------------------------------------------------------


def _sync(device: Any) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()


class MedsegLoop:
    """medseg's training step on its real data path (Zarr -> sampler -> augmentation -> loader -> stepper)."""

    def __init__(self, args: argparse.Namespace, total: int) -> None:
        import torch

        from medseg.config import TrainConfig
        from medseg.plan import Plan
        from medseg.splits import Splits
        from medseg.training.augment import AugmentParams
        from medseg.training.loop import make_loader
        from medseg.training.patches import PatchDataset, load_cases
        from medseg.training.steppers import build_stepper
        from medseg.workspace import Workspace

        torch.manual_seed(0)
        ws = Workspace.at(args.workdir)
        plan = Plan.load(ws.plan_path)
        ids = Splits.load(ws.splits_path).train
        self.device = torch.device(args.device)
        cfg = TrainConfig(filters=plan.filters, batch_size=args.batch, amp=args.amp, compile_model=args.compile,
                          channels_last=args.channels_last, gpu_augmentation=args.gpu_aug,
                          num_workers=args.workers, iterations_per_epoch=total)
        self.stepper = build_stepper("cnn", plan, cfg, self.device)
        cases = load_cases({c: ws.preprocessed_case_path(c) for c in ids})
        dataset = PatchDataset(cases, plan.patch_size, total * args.batch, cfg.foreground_oversample, seed=0,
                               augment=AugmentParams(), spatial_dims=plan.spatial_dims,
                               defer_augmentation=cfg.gpu_augmentation, batch_size=args.batch)
        self.loader = make_loader(dataset, args.batch, self.device, cfg)
        self.it = iter(self.loader)
        self.total = total
        self.i = 0

    def step(self) -> tuple[float, float]:
        """One iteration; returns ``(seconds waiting for the batch, seconds in total)``."""
        t0 = time.perf_counter()
        batch = next(self.it)
        t1 = time.perf_counter()
        self.stepper.set_progress(self.i / self.total, 0)
        self.stepper.train_step(batch, 0, self.i)  # ends with a host sync (loss value / NaN check)
        self.i += 1
        return t1 - t0, time.perf_counter() - t0


class MonaiLoop:
    """A bare MONAI loop: DynUNet + DeepSupervisionLoss(DiceCELoss) + SGD on in-memory tensors."""

    def __init__(self, args: argparse.Namespace) -> None:
        import torch
        from monai.losses import DeepSupervisionLoss, DiceCELoss
        from monai.networks.nets import DynUNet

        from medseg.io.case_arrays import open_image, open_label
        from medseg.plan import Plan
        from medseg.splits import Splits
        from medseg.training.network import segmenter_kwargs
        from medseg.workspace import Workspace

        torch.manual_seed(0)
        ws = Workspace.at(args.workdir)
        plan = Plan.load(ws.plan_path)
        self.device = torch.device(args.device)
        self.net = DynUNet(**segmenter_kwargs(plan, True)).to(self.device)
        self.loss_fn = DeepSupervisionLoss(
            DiceCELoss(include_background=False, to_onehot_y=True, softmax=True, batch=True)
        )
        self.opt = torch.optim.SGD(self.net.parameters(), lr=1e-2, momentum=0.99, nesterov=True, weight_decay=3e-5)
        self.rng = np.random.default_rng(0)
        pz, py, px = plan.patch_size
        images, labels = [], []
        for cid in Splits.load(ws.splits_path).train:  # a pool of in-memory random crops, no augmentation
            img = np.asarray(open_image(ws.preprocessed_case_path(cid))[...])
            lab = np.asarray(open_label(ws.preprocessed_case_path(cid))[...])
            for _ in range(4):
                z, y, x = (int(self.rng.integers(0, max(1, s - p) + 1))
                           for s, p in zip(img.shape, (pz, py, px), strict=True))
                images.append(img[z:z + pz, y:y + py, x:x + px])
                labels.append(lab[z:z + pz, y:y + py, x:x + px])
        xs = torch.from_numpy(np.stack(images)[:, None].astype(np.float32))
        ys = torch.from_numpy(np.stack(labels)[:, None].astype(np.int64))
        if plan.spatial_dims == 2:
            xs, ys = xs[:, :, 0], ys[:, :, 0]
        self.xs, self.ys = xs.to(self.device), ys.to(self.device)
        from medseg.training.device import uses_amp

        self.amp = uses_amp(self.device, args.amp)  # the same precision as medseg's stepper
        self.batch = args.batch
        self.net.train()

    def step(self) -> tuple[float, float]:
        import torch

        t0 = time.perf_counter()
        idx = torch.from_numpy(self.rng.choice(len(self.xs), size=self.batch, replace=False)).to(self.device)
        x, y = self.xs[idx], self.ys[idx]
        with torch.autocast(device_type=self.device.type, dtype=torch.bfloat16, enabled=self.amp):
            out = self.net(x)
        loss = self.loss_fn([h.float() for h in torch.unbind(out, dim=1)], y)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.net.parameters(), 12.0)
        self.opt.step()
        loss.item()
        return 0.0, time.perf_counter() - t0


def _summary(steps: list[tuple[float, float]], elapsed: float | None = None) -> dict[str, Any]:
    waits, times = [w for w, _ in steps], [t for _, t in steps]
    return {
        "s_per_it": float(np.mean(times)),
        "s_per_it_median": float(np.median(times)),
        "data_wait_share": float(sum(waits) / sum(times)),
        "wall_per_it": elapsed / len(steps) if elapsed else float(np.mean(times)),
    }


def run_child(args: argparse.Namespace) -> dict[str, Any]:
    """Child process: ``medseg`` or ``monai`` alone, or ``both`` interleaved iteration by iteration (the
    fair comparison on a CPU shared with other jobs: load spikes hit both loops alike)."""
    total = args.warmup + args.iters
    loops: dict[str, Any] = {}
    if args.child in ("medseg", "both"):
        loops["medseg"] = MedsegLoop(args, total)
    if args.child in ("monai", "both"):
        loops["monai"] = MonaiLoop(args)
    device = next(iter(loops.values())).device
    names = list(loops)
    steps: dict[str, list[tuple[float, float]]] = {n: [] for n in names}
    sampler = UtilSampler() if device.type == "cuda" else None
    t_start = time.perf_counter()
    for i in range(total):
        if i == args.warmup:
            _sync(device)
            t_start = time.perf_counter()
            if sampler is not None:
                sampler.__enter__()
        for name in names if i % 2 == 0 else names[::-1]:
            wait, total_s = loops[name].step()
            if i >= args.warmup:
                steps[name].append((wait, total_s))
    _sync(device)
    elapsed = time.perf_counter() - t_start
    if sampler is not None:
        sampler.__exit__()
    out: dict[str, Any] = {n: _summary(steps[n], elapsed if len(names) == 1 else None) for n in names}
    if "medseg" in loops:
        out["medseg"]["workers"] = loops["medseg"].loader.num_workers
        out["medseg"]["gpu_util"] = sampler.mean if sampler is not None else None
    return out


# --- parent -----------------------------------------------------------------------------------------


def _measure(child: str, args: argparse.Namespace, extra: list[str]) -> Any:
    from _measure import run_measured

    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", child, "--workdir", str(args.workdir),
           "--device", args.device, "--iters", str(args.iters), "--warmup", str(args.warmup),
           "--batch", str(args.batch), "--threads", str(args.threads), *extra]
    if args.workers is not None:
        cmd += ["--workers", str(args.workers)]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "PYTHONPATH": str(REPO)}
    m = run_measured(child, cmd, env=env, timeout=args.timeout, cwd=REPO)
    if not m.ok or not m.info:
        raise SystemExit(f"{child} benchmark failed (rc {m.rc}):\n{m.log_tail}")
    return m


def _flags(args: argparse.Namespace) -> list[str]:
    out = [] if args.amp else ["--no-amp"]
    for flag in ("compile", "channels_last", "gpu_aug"):
        if getattr(args, flag):
            out.append("--" + flag.replace("_", "-"))
    return out


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.1f}%"


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--patch", default="16,64,64", help="z,y,x; 1,y,x for a 2D plan")
    ap.add_argument("--shape", default="40,160,160", help="case shape z,y,x")
    ap.add_argument("--cases", type=int, default=4)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--filters", default="16,32,64,128")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--workers", type=int, default=None, help="DataLoader workers (default: medseg's choice)")
    ap.add_argument("--compile", action="store_true", help="torch.compile the segmenter (medseg)")
    ap.add_argument("--channels-last", action="store_true")
    ap.add_argument("--gpu-aug", action="store_true", help="augmentation on the device (train.gpu_augmentation)")
    ap.add_argument("--no-amp", dest="amp", action="store_false", help="fp32 (default: bf16 on CUDA / AMX CPUs)")
    ap.add_argument("--separate", action="store_true",
                    help="one child process per tool (default on CUDA; on CPU both loops alternate in one child)")
    ap.add_argument("--timeout", type=float, default=1800)
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--child", choices=["medseg", "monai", "both"], default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.child:
        import torch

        torch.set_num_threads(args.threads)
        print("BENCHJSON " + json.dumps(run_child(args)), flush=True)
        return

    import torch

    from medseg.hardware import cpu_has_fast_bf16, cpu_model
    from medseg.training.device import uses_amp

    if args.device == "cuda":
        if not torch.cuda.is_available():
            raise SystemExit("--device cuda but torch.cuda.is_available() is False")
        args.separate = True
    own = args.workdir is None
    base = Path(tempfile.mkdtemp(prefix="medseg-bench-train-")) if own else args.workdir
    patch = tuple(int(v) for v in args.patch.split(","))
    shape = tuple(int(v) for v in args.shape.split(","))
    filters = [int(v) for v in args.filters.split(",")]
    try:
        args.workdir = build_workspace(base / "ws", args.cases, shape, patch, filters)  # type: ignore[arg-type]
        flags = _flags(args)
        if args.separate:
            m_med = _measure("medseg", args, flags)
            m_mon = _measure("monai", args, [] if args.amp else ["--no-amp"])
            med, mon = m_med.info["medseg"], m_mon.info["monai"]
            rss = {"medseg": m_med.rss_tree_mib, "monai": m_mon.rss_tree_mib}
        else:
            m_both = _measure("both", args, flags)
            med, mon = m_both.info["medseg"], m_both.info["monai"]
            rss = {"medseg": m_both.rss_tree_mib, "monai": m_both.rss_tree_mib}
        ratio = med["s_per_it_median"] / mon["s_per_it_median"]
        mode = "separate processes" if args.separate else "one process, iterations interleaved"
        where = f"GPU {torch.cuda.get_device_name()}" if args.device == "cuda" else f"CPU {cpu_model()}"
        precision = "bf16 AMP" if uses_amp(torch.device(args.device), args.amp) else "fp32"
        print(f"\nTraining step on {where} ({precision}): patch {patch}, batch {args.batch}, filters {filters}, "
              f"{args.threads} threads, {args.iters} timed iterations (+{args.warmup} warm-up), {mode}")
        print(f"{'tool':<8} {'precision':<9} {'s/it median':>12} {'s/it mean':>10} {'data wait':>10} "
              f"{'peak RSS MiB':>13}")
        for name, r in (("medseg", med), ("monai", mon)):
            wait = r["data_wait_share"] if name == "medseg" else None
            print(f"{name:<8} {precision:<9} {r['s_per_it_median']:>12.4f} {r['s_per_it']:>10.4f} {_pct(wait):>10} "
                  f"{rss[name]:>13.0f}")
        print(f"ratio medseg / monai (medians) = {ratio:.3f} (target <= 1.1 on CPU)")
        key = "cpu_ratio" if args.device == "cpu" else "ratio"
        result = (f"medseg_s_per_it={med['s_per_it_median']:.4f} monai_s_per_it={mon['s_per_it_median']:.4f} "
                  f"{key}={ratio:.3f} precision={'bf16' if precision != 'fp32' else 'fp32'}")
        bf16_here = args.device == "cuda" or cpu_has_fast_bf16()
        print(f"\n{where}: medseg training step by precision (flags: {' '.join(flags) or 'none'})")
        print(f"{'precision':<10} {'it/s':>8} {'GPU util':>9} {'data wait':>10} {'workers':>8}")
        if bf16_here:
            other = _measure("medseg", args, [f for f in flags if f != "--no-amp"] + (["--no-amp"] if args.amp else []))
            amp, fp32 = (med, other.info["medseg"]) if args.amp else (other.info["medseg"], med)
            rows: list[tuple[str, dict[str, Any] | None]] = [("bf16 AMP", amp), ("fp32", fp32)]
        else:
            amp, fp32 = None, med
            rows = [("bf16 AMP", None), ("fp32", fp32)]
        for name, r in rows:
            if r is None:
                print(f"{name:<10} {'n/a':>8}  (no bf16 units, AMX / AVX512-BF16, on this CPU: medseg trains in fp32)")
                continue
            util = r.get("gpu_util")
            print(f"{name:<10} {1 / r['wall_per_it']:>8.2f} {(f'{util:.0f}%' if util is not None else 'n/a'):>9} "
                  f"{_pct(r['data_wait_share']):>10} {r['workers']:>8}")
        result += f" fp32_s_per_it={fp32['wall_per_it']:.4f}"
        if amp is not None:
            speedup = fp32["wall_per_it"] / amp["wall_per_it"]
            print(f"AMP speed-up = {speedup:.2f}x" + (" (targets: data wait ~0 %, GPU utilisation >= 90 %)"
                                                      if args.device == "cuda" else ""))
            util = amp.get("gpu_util")
            if args.device == "cuda":
                result += (f" gpu_it_s={1 / amp['wall_per_it']:.2f} gpu_util={'nan' if util is None else f'{util:.1f}'}"
                           f" data_wait={amp['data_wait_share']:.3f}")
            result += f" amp_speedup={speedup:.2f}"
        print("RESULT " + result)
    finally:
        if own:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
