"""Benchmark (not a test): wall-clock time for the CNN to reach a validation Dice on the phantom.

Writes a preprocessed phantom workspace (cases ``(30, 100, 100)`` at (3.5, 1.5, 1.5) mm), trains with
a demo-sized config and prints the validation Dice per epoch and the time to reach ``--target``::

    .venv/bin/python tests/training/bench_convergence.py --minutes 3 --patch 32 64 64
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from phantom_data import make_plan, write_phantom_workspace  # noqa: E402

from medseg.config import MedsegConfig  # noqa: E402
from medseg.training.train import train_model  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--family", default="cnn")
    p.add_argument("--train-cases", type=int, default=8)
    p.add_argument("--val-cases", type=int, default=2)
    p.add_argument("--shape", type=int, nargs=3, default=[30, 100, 100])
    p.add_argument("--patch", type=int, nargs=3, default=[32, 64, 64])
    p.add_argument("--filters", type=int, nargs="+", default=[16, 32, 64, 128])
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--iters", type=int, default=25)
    p.add_argument("--minutes", type=float, default=3.0, help="wall-clock budget; 0 = none")
    p.add_argument("--oversample", type=float, default=0.33)
    p.add_argument("--lr", type=float, default=1e-2)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--target", type=float, default=0.8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=None, help="write the result JSON here")
    a = p.parse_args()

    root = Path(tempfile.mkdtemp(prefix="medseg-bench-"))
    shape = tuple(a.shape)
    plan = make_plan(patch_size=tuple(a.patch), filters=tuple(a.filters), median_shape=shape)
    ws = write_phantom_workspace(root, n_train=a.train_cases, n_val=a.val_cases, shape=shape, plan=plan, seed=a.seed)
    cfg = MedsegConfig.model_validate(
        {
            "seed": a.seed,
            "train": {
                "max_epochs": a.epochs,
                "iterations_per_epoch": a.iters,
                "batch_size": a.batch,
                "filters": a.filters,
                "val_every": 1,
                "max_minutes": a.minutes or None,
                "foreground_oversample": a.oversample,
                "learning_rate": a.lr,
                "device": "cpu",
                "num_threads": a.threads,
            },
        }
    )
    curve: list[dict[str, Any]] = []

    cpu0 = time.process_time()

    def progress(e: dict[str, Any]) -> None:
        if e["event"] == "epoch":
            row = {
                "epoch": e["epoch"],
                "seconds": round(e["seconds"], 1),
                "cpu_seconds": round(time.process_time() - cpu0, 1),
                "loss": round(e["loss"], 4),
                "val": e.get("val_mean_dice"),
                "per_class": e.get("val_dice"),
            }
            curve.append(row)
            print(json.dumps(row), flush=True)

    t0 = time.time()
    result = train_model(ws, cfg, a.family, progress=progress)
    reached = next((r for r in curve if r["val"] is not None and r["val"] >= a.target), None)
    summary = {
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(a).items()},
        "val_mean_dice": result.val_mean_dice,
        "per_class": result.val_dice_per_class,
        "epochs": result.epochs,
        "iterations": result.iterations,
        "train_seconds": round(result.seconds, 1),
        "wall_seconds": round(time.time() - t0, 1),
        "stopped": result.stopped_reason,
        "seconds_to_target": reached["seconds"] if reached else None,
        "iterations_to_target": (reached["epoch"] + 1) * a.iters if reached else None,
        "curve": curve,
    }
    print(json.dumps({k: v for k, v in summary.items() if k != "curve"}, indent=1))
    if a.out:
        a.out.write_text(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
