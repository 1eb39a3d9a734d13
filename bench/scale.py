"""Benchmark the scale-out of the GPU stages, both parts in one run (or one with ``--part``).

(a) batch inference of ``--cases`` volumes over Dask workers: in-process vs 1 worker vs all cores
(on a GPU node, ``--device cuda``: 1 GPU vs all GPUs), wall time, cases per worker, peak RSS per
worker, outputs compared byte for byte (:mod:`_scale_infer`);
(b) data-parallel training: 2 gloo processes x batch B vs 1 process x batch 2B for ``--iters``
iterations, max abs weight difference and time (:mod:`_scale_ddp`).
CPU model and precision are printed with each table.

Usage::

    python bench/scale.py [--part all|infer|ddp] [--cases 8] [--slices 48] [--size 160] [--device cpu]
                          [--iters 20] [--batch 2] [--threads 1] [--lr 0.01] [--ddp-cases 4]
                          [--shape 32,96,96] [--patch 16,64,64] [--workdir DIR]

Ends with ``RESULT infer_workers_used=... infer_speedup=... ddp_max_abs_diff=... threads_max_abs_diff=...
ddp_s_per_it=... single_s_per_it=... single_2t_s_per_it=...`` (the keys of the parts that ran).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _scale_ddp import _ints, ddp_rows, print_ddp_table  # noqa: E402
from _scale_infer import infer_rows, print_infer  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--part", choices=["all", "infer", "ddp"], default="all")
    ap.add_argument("--cases", type=int, default=8, help="(a) volumes to predict")
    ap.add_argument("--slices", type=int, default=48, help="(a) slices per volume")
    ap.add_argument("--size", type=int, default=160, help="(a) rows = columns per slice")
    ap.add_argument("--device", choices=["cpu", "cuda"], default="cpu", help="(a) cuda: 1 GPU vs all GPUs")
    ap.add_argument("--iters", type=int, default=20, help="(b) training iterations K")
    ap.add_argument("--batch", type=int, default=2, help="(b) batch B of each DDP process (one process: 2B)")
    ap.add_argument("--threads", type=int, default=1, help="(b) torch threads per DDP process")
    ap.add_argument("--lr", type=float, default=0.01, help="(b) learning rate (train.learning_rate)")
    ap.add_argument("--ddp-cases", type=int, default=4, help="(b) phantom cases in the training workspace")
    ap.add_argument("--shape", type=_ints, default=(32, 96, 96), help="(b) phantom volume shape")
    ap.add_argument("--patch", type=_ints, default=(16, 64, 64), help="(b) patch size")
    ap.add_argument("--workdir", type=Path, default=None, help="kept (default: a temporary folder, removed)")
    args = ap.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="medseg-scale-"))
    result: list[str] = []
    try:
        if args.part in ("all", "infer"):
            rows = infer_rows(workdir / "infer", args.cases, args.slices, args.size, args.device)
            used, speedup = print_infer(rows)
            result += [f"infer_workers_used={used}", f"infer_speedup={speedup:.2f}"]
        if args.part in ("all", "ddp"):
            drows = ddp_rows(args.iters, args.batch, args.threads, args.ddp_cases, args.shape, args.patch,
                             workdir / "ddp", args.lr)
            print_ddp_table(drows, args.iters, args.lr)
            ddp = next(r for r in drows if r["processes"] > 1)
            single, threads = drows[0], drows[1]
            result += [f"ddp_max_abs_diff={ddp['max_abs_diff']:.3e}",
                       f"threads_max_abs_diff={threads['max_abs_diff']:.3e}", f"ddp_s_per_it={ddp['s_per_it']:.3f}",
                       f"single_s_per_it={single['s_per_it']:.3f}", f"single_2t_s_per_it={threads['s_per_it']:.3f}"]
        print(f"\nload average at the end: {os.getloadavg()}")
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    print("RESULT " + " ".join(result))


if __name__ == "__main__":
    main()
