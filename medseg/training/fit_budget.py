"""Plan a run's iteration budget to a number of minutes on this machine (``train.fit_minutes``).

The training budget is ``max_epochs × iterations_per_epoch`` and the poly learning rate anneals over it
(:mod:`medseg.training.loop`). A user who has "15 minutes of this CPU" wants the run that fits them,
annealed to the end, not a long schedule cut by the time cap. Before training, :func:`fit_epochs`

1. times :data:`MEASURED_STEPS` real training steps (after :data:`WARMUP_STEPS` untimed ones) on
   batches of epoch 0, data loading included, and one validation of a few cases;
2. restores the networks, optimizers, schedulers and random generators to their state before the
   measurement, so the measurement leaves no trace in the trained weights;
3. returns the number of epochs whose steps and validations fit in what is left of the minutes, with
   :data:`MARGIN` kept free.

The planned ``max_epochs`` is written to the run folder (a resumed run keeps it) and to the bundle's
training config: setting ``train.max_epochs`` to it (and ``fit_minutes`` to None) trains the same model
on any machine. The plan depends on this machine's speed, so runs on different machines differ;
``train.max_minutes`` still caps the run if the machine slows down.
"""

from __future__ import annotations

import copy
import logging
import math
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from medseg.config import TrainConfig
from medseg.io.json_file import read_json, write_json
from medseg.plan import Plan
from medseg.training.checkpoint import capture_rng, restore_rng
from medseg.training.loop import VALIDATION_INFER, make_loader
from medseg.training.patches import PatchDataset
from medseg.training.steppers import CnnStepper, GanStepper
from medseg.training.validate import validate

log = logging.getLogger(__name__)

WARMUP_STEPS = 2
#: Enough steps that a slow one (data loading, a garbage collection) is in the mean as often as in the run.
MEASURED_STEPS = 16
VALIDATION_CASES = 3
#: Share of the minutes kept free (checkpoints, bundle, timing noise).
MARGIN = 0.05
PLAN_FILE = "fitted_budget.json"


@dataclass
class FittedBudget:
    """What :func:`fit_epochs` measured and planned."""

    max_epochs: int
    seconds_per_iteration: float
    validation_seconds: float  # one validation of all validation cases (estimated)
    measure_seconds: float  # time the measurement took (out of the minutes)
    minutes: float


def fit_epochs(
    stepper: CnnStepper,
    dataset: PatchDataset,
    val_paths: dict[str, Path],
    plan: Plan,
    cfg: TrainConfig,
    device: torch.device,
    clock: Callable[[], float] = time.monotonic,
) -> FittedBudget:
    """Measure the step and validation time, restore every state, return the epochs that fit ``cfg.fit_minutes``."""
    if cfg.fit_minutes is None:
        raise ValueError("fit_epochs needs train.fit_minutes")
    start = clock()
    saved, rng = copy.deepcopy(stepper.state_dict()), capture_rng()
    dataset.set_epoch(0)
    times = []
    batches = iter(make_loader(dataset, cfg.batch_size, device, cfg))
    for i in range(WARMUP_STEPS + MEASURED_STEPS):
        t0 = clock()
        batch = next(batches, None)
        if batch is None:  # an epoch shorter than the measurement
            dataset.set_epoch(0)
            batches = iter(make_loader(dataset, cfg.batch_size, device, cfg))
            batch = next(batches)
        stepper.set_progress(0.0, 0)
        if isinstance(stepper, GanStepper):
            stepper.set_lambda(0, i)
        stepper.train_step(batch, 0, i)
        times.append(clock() - t0)
    some = dict(list(val_paths.items())[:VALIDATION_CASES])
    t0 = clock()
    validate(stepper.model, some, plan, device, VALIDATION_INFER)
    val_s = (clock() - t0) * len(val_paths) / max(1, len(some))
    stepper.load_state_dict(saved)
    restore_rng(rng)
    s_it = statistics.fmean(times[WARMUP_STEPS:])  # the run's time is the sum of its steps: the mean, not the median
    measured = clock() - start
    left = cfg.fit_minutes * 60.0 * (1 - MARGIN) - measured - val_s  # the final validation always runs
    per_epoch = cfg.iterations_per_epoch * s_it + val_s / cfg.val_every
    epochs = max(1, math.floor(left / per_epoch)) if per_epoch > 0 else 1
    fitted = FittedBudget(epochs, s_it, val_s, measured, cfg.fit_minutes)
    log.info("train.fit_minutes=%g: %.3f s/iteration, %.1f s per validation -> %d epochs of %d iterations "
             "(set train.max_epochs=%d to train the same model on another machine)", cfg.fit_minutes, s_it,
             val_s, epochs, cfg.iterations_per_epoch, epochs)
    return fitted


def fitted_config(
    cfg: TrainConfig, run_dir: Path, measure: Callable[[], FittedBudget]
) -> tuple[TrainConfig, dict[str, Any] | None]:
    """``cfg`` with ``max_epochs`` fitted to ``fit_minutes`` (measured once per run folder, kept on resume).

    Returns the config the loop trains with and the fitted budget as a dict (None without ``fit_minutes``).
    """
    if cfg.fit_minutes is None:
        return cfg, None
    path = run_dir / PLAN_FILE
    if path.is_file():
        fitted = read_json(path)
    else:
        fitted = asdict(measure())
        write_json(path, fitted)
    return cfg.model_copy(update={"max_epochs": int(fitted["max_epochs"])}), fitted
