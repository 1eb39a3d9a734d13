"""bench/scale.py (b): data-parallel training.

**(b) DDP** — :func:`ddp_rows`: the CNN train stage on a phantom workspace (``tests/training/phantom_data.py``:
``--cases`` preprocessed CT phantoms of ``--shape`` voxels, patch ``--patch``), ``--iters`` K iterations
of the global batch 2B (``--batch`` B per process):

* ``1 x 2B``: one process (``train.processes=1``) with batch 2B, at ``--threads`` and at 2 x ``--threads``
  torch threads (the same cores as the two processes together);
* ``2 x B``: ``train.processes=2``, two gloo processes (torchrun, started by the stage) with batch B
  each, ``--threads`` torch threads each.

Per row: the wall time of the stage call (torchrun start and imports included), the training loop's
seconds (from the bundle: K steps plus the final validation), the loop's seconds per iteration, and the
max abs difference of the weights after the last step from those of the first row (one process, one
thread). The one-process row at 2 threads is the yardstick of float rounding: its sums run in another
order too, and SGD with momentum 0.99 carries such differences on.
CPU model and precision (fp32 on CPUs without bf16 units) are printed with the table.

Run through ``bench/scale.py`` (its usage); its RESULT line carries this part's keys.

Keys of the RESULT line: ``RESULT ddp_max_abs_diff=... threads_max_abs_diff=... ddp_s_per_it=... single_s_per_it=...
single_2t_s_per_it=...``.
"""

from __future__ import annotations

import platform
import sys
import time
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "training"))

import phantom_data  # noqa: E402  (tests/training: the phantom workspace of the training tests)

from medseg.config import MedsegConfig, ModelFamily  # noqa: E402
from medseg.io.bundle import read_metadata  # noqa: E402
from medseg.stages.train import run_train_stage  # noqa: E402
from medseg.training.checkpoint import LAST, load_checkpoint  # noqa: E402
from medseg.training.device import uses_amp  # noqa: E402


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(v) for v in text.split(","))


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else the platform's processor string."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _workspace(root: Path, cases: int, shape: tuple[int, int, int], patch: tuple[int, int, int]) -> Path:
    plan = phantom_data.make_plan(patch_size=patch, median_shape=shape)
    return Path(phantom_data.write_phantom_workspace(root, n_train=cases, n_val=1, shape=shape, plan=plan).root)


def _train(ws_root: Path, iters: int, batch: int, processes: int, threads: int, lr: float) -> dict[str, Any]:
    cfg = MedsegConfig.model_validate({
        "seed": 0, "workspace": str(ws_root),
        "train": {"max_epochs": 1, "iterations_per_epoch": iters, "batch_size": batch, "val_every": 1,
                  "filters": [4, 8, 16, 32], "device": "cpu", "num_threads": threads, "processes": processes,
                  "max_restarts": 0, "learning_rate": lr},
    })
    torch.set_num_threads(threads)
    started = time.perf_counter()
    outcome = run_train_stage(cfg, ModelFamily.CNN, force=True)
    wall = time.perf_counter() - started
    bundle = Path(outcome.outputs[0])
    loop_s = float(read_metadata(bundle)["training"]["seconds"])
    weights = load_checkpoint(bundle / "checkpoints" / LAST)["stepper"]["modules"]["model"]
    return {"wall_s": wall, "loop_s": loop_s, "s_per_it": loop_s / iters, "weights": weights}


def _max_abs_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    return max(float((a[k].double() - b[k].double()).abs().max()) for k in a)


def ddp_rows(iters: int, batch: int, threads: int, cases: int, shape: tuple[int, int, int],
             patch: tuple[int, int, int], workdir: Path, lr: float = 0.01) -> list[dict[str, Any]]:
    """(b) 2 gloo processes x batch ``batch`` vs 1 process x batch ``2 * batch``, ``iters`` iterations each.

    Returns:
        one dict per row: ``setup``, ``processes``, ``threads`` (per process), ``batch`` (per process),
        ``wall_s``, ``loop_s``, ``s_per_it`` and (after the first row) ``max_abs_diff`` from the first row.
    """
    runs = [("1 x 2B", 1, threads, 2 * batch), ("1 x 2B", 1, 2 * threads, 2 * batch), ("2 x B (gloo)", 2, threads,
                                                                                        batch)]
    rows: list[dict[str, Any]] = []
    reference: dict[str, torch.Tensor] | None = None
    for i, (setup, processes, n_threads, per_process) in enumerate(runs):
        ws = _workspace(workdir / f"ws{i}", cases, shape, patch)
        result = _train(ws, iters, 2 * batch, processes, n_threads, lr)
        weights = result.pop("weights")
        row = {"setup": setup, "processes": processes, "threads": n_threads, "batch": per_process, **result}
        if reference is None:
            reference = weights
        else:
            row["max_abs_diff"] = _max_abs_diff(weights, reference)
        rows.append(row)
    return rows


def print_ddp_table(rows: list[dict[str, Any]], iters: int, lr: float) -> None:
    precision = "bf16" if uses_amp(torch.device("cpu")) else "fp32"
    print(f"\n(b) data-parallel training, {iters} iterations at lr {lr}, CPU: {cpu_model()}, precision {precision}")
    print(f"{'setup':<14}{'procs':>6}{'threads':>8}{'batch':>6}{'wall s':>9}{'loop s':>9}{'s/it':>8}"
          f"{'max|dw|':>11}")
    for r in rows:
        diff = f"{r['max_abs_diff']:.2e}" if "max_abs_diff" in r else "-"
        print(f"{r['setup']:<14}{r['processes']:>6}{r['threads']:>8}{r['batch']:>6}{r['wall_s']:>9.1f}"
              f"{r['loop_s']:>9.1f}{r['s_per_it']:>8.3f}{diff:>11}")
