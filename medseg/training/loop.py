"""The epoch loop shared by all model families: budget, LR progress, validation, checkpoints, resume.

* Budget: ``max_epochs × iterations_per_epoch`` iterations. The learning-rate schedule follows the
  iteration count only, so the same config, data and seed give the same model on a fast and a slow
  machine. ``max_minutes`` (wall clock, accumulated across resumes) is a safety cap, checked before
  every iteration: when it fires the run stops cleanly, validates, keeps the best weights and records
  a warning ("stopped by the time cap after N of M iterations"); such a bundle is not promoted over
  a champion that completed its budget (:mod:`medseg.training.promotion`).
* Validation every ``val_every`` epochs and after the last epoch; ``best.pt`` holds the weights of
  the best validation mean Dice, ``last.pt`` the full training state after every epoch.
* Resume: when ``run_dir/last.pt`` exists the loop continues from it.
* A NaN/inf loss raises :class:`TrainingDivergedError` naming epoch and iteration; the checkpoints
  on disk (the last good state) are left untouched.
* Data parallel (``ctx`` active, :mod:`medseg.training.distributed`): every rank runs this loop on its
  slice of each global batch; rank 0 alone validates, writes ``best.pt``/``last.pt`` and reports
  progress, then sends the updated :class:`LoopState` to the others, and rank 0's clock decides the
  time cap, so all ranks stop at the same iteration. Every rank resumes from the same ``last.pt``.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from medseg.config import InferConfig, TrainConfig
from medseg.plan import Plan
from medseg.training.budget import StopReason, time_cap_warning
from medseg.training.checkpoint import BEST, LAST, load_checkpoint, restore_rng, save_checkpoint
from medseg.training.distributed import SINGLE, DistContext, barrier, broadcast_flag, broadcast_object
from medseg.training.patches import PatchDataset
from medseg.training.rank_sampler import RankSliceSampler
from medseg.training.steppers import CnnStepper, GanStepper, NonFiniteLossError
from medseg.training.validate import ValidationResult, validate

log = logging.getLogger(__name__)

Progress = Callable[[dict[str, Any]], None]
#: Sliding-window settings used for validation during training.
VALIDATION_INFER = InferConfig(overlap=0.5, sw_batch_size=2, mirror_tta=False)


class TrainingDivergedError(RuntimeError):
    """Training stopped because a loss became NaN/inf; the message names epoch, iteration and checkpoint."""


@dataclass
class LoopState:
    """Progress of a run (stored in every checkpoint)."""

    epoch: int = 0  # completed epochs
    iteration: int = 0  # completed iterations, all epochs
    elapsed: float = 0.0  # wall-clock seconds, all sessions
    history: list[dict[str, Any]] = field(default_factory=list)
    best_mean_dice: float = -1.0
    best_epoch: int = -1
    best_validation: dict[str, Any] | None = None
    validated_epoch: int = -1  # value of ``epoch`` at the last validation
    stopped_reason: str | None = None
    warnings: list[str] = field(default_factory=list)
    resumed_from_epoch: int | None = None


def loader_workers(device: torch.device, cfg: TrainConfig | None = None) -> int:
    """DataLoader worker processes: ``cfg.num_workers`` when set, else 0 on CPU (the step already uses
    every core; a worker would compete with it) and up to 8 on CUDA hosts (loading must never starve
    the GPU)."""
    if cfg is not None and cfg.num_workers is not None:
        return int(cfg.num_workers)
    return 0 if device.type != "cuda" else max(0, min(8, (os.cpu_count() or 1) - 1))


def make_loader(
    dataset: PatchDataset,
    batch_size: int,
    device: torch.device,
    cfg: TrainConfig | None = None,
    ctx: DistContext = SINGLE,
) -> DataLoader[dict[str, Any]]:
    """Sequential loader (the dataset is already random per epoch), see :func:`loader_workers`.

    Samples depend only on ``(seed, epoch, index)``, so the batches are identical whatever the number
    of workers. Workers start from a fork server, not by forking this process: a fork inherits the
    OpenMP pool of torch, Zarr's I/O thread and Prefect's threads in whatever state they are, and
    such children can die at random. With an active ``ctx``, ``batch_size`` is the global batch and
    the loader yields this rank's slice of each (:class:`~medseg.training.rank_sampler.RankSliceSampler`).
    """
    workers = loader_workers(device, cfg)
    sampler = None
    if ctx.active:
        sampler = RankSliceSampler(len(dataset), batch_size, ctx.rank, ctx.world_size)
        batch_size = sampler.local_batch
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        shuffle=False,
        num_workers=workers,
        pin_memory=device.type == "cuda",
        drop_last=False,
        prefetch_factor=4 if workers > 0 else None,
        multiprocessing_context="forkserver" if workers > 0 else None,
    )


def _mean(values: list[float]) -> float:
    return float(sum(values) / len(values)) if values else float("nan")


def _save_last(run_dir: Path, stepper: CnnStepper, state: LoopState, run_info: dict[str, Any]) -> Path:
    return save_checkpoint(
        run_dir / LAST,
        {"kind": "last", "stepper": stepper.state_dict(), "state": asdict(state), "run": run_info},
    )


def _validate_now(
    stepper: CnnStepper,
    state: LoopState,
    val_paths: dict[str, Path],
    plan: Plan,
    device: torch.device,
    run_dir: Path,
    run_info: dict[str, Any],
    record: dict[str, Any] | None,
    ctx: DistContext = SINGLE,
) -> None:
    """Validate on rank 0 (``best.pt`` when better); every rank then holds rank 0's ``state`` and ``record``."""
    if ctx.is_main:
        _validate_main(stepper, state, val_paths, plan, device, run_dir, run_info, record)
    if ctx.active:
        synced_state, synced_record = broadcast_object(ctx, (asdict(state), record))
        if ctx.is_main:
            return
        for key, value in synced_state.items():
            setattr(state, key, value)
        if record is not None:
            record.clear()
            record.update(synced_record or {})


def _validate_main(
    stepper: CnnStepper,
    state: LoopState,
    val_paths: dict[str, Path],
    plan: Plan,
    device: torch.device,
    run_dir: Path,
    run_info: dict[str, Any],
    record: dict[str, Any] | None,
) -> ValidationResult:
    result = validate(stepper.model, val_paths, plan, device, VALIDATION_INFER)
    state.validated_epoch = state.epoch
    score = -1.0 if math.isnan(result.mean) else result.mean
    if record is not None:
        record["val_mean_dice"] = None if math.isnan(result.mean) else result.mean
        record["val_dice"] = {k: (None if math.isnan(v) else v) for k, v in result.per_class.items()}
    if score > state.best_mean_dice or state.best_epoch < 0:
        state.best_mean_dice = score
        state.best_epoch = state.epoch - 1
        state.best_validation = {**result.to_dict(), "epoch": state.epoch - 1}
        save_checkpoint(
            run_dir / BEST,
            {
                "kind": "best",
                "model": stepper.model.state_dict(),
                "validation": state.best_validation,
                "run": run_info,
            },
        )
    return result


def run_loop(
    stepper: CnnStepper,
    dataset: PatchDataset,
    val_paths: dict[str, Path],
    plan: Plan,
    cfg: TrainConfig,
    run_dir: Path,
    device: torch.device,
    run_info: dict[str, Any],
    progress: Progress | None = None,
    clock: Callable[[], float] = time.monotonic,
    ctx: DistContext = SINGLE,
) -> LoopState:
    """Train ``stepper`` for its iteration budget (or until the time cap); returns the final :class:`LoopState`.

    ``clock`` (seconds) measures the time cap and the reported rates; it never changes the weights.
    ``ctx``: this rank of a data-parallel run (every rank calls this; see the module notes).

    Raises:
        TrainingDivergedError: a loss became NaN/inf (checkpoints on disk are the last good state).
    """
    state = LoopState()
    last_path = run_dir / LAST
    if last_path.is_file():
        ck = load_checkpoint(last_path, map_location=device)
        stepper.load_state_dict(ck["stepper"])
        state = LoopState(**ck["state"])
        restore_rng(ck["rng"])
        state.resumed_from_epoch = state.epoch
        log.info("resuming %s training from %s (epoch %d)", stepper.family, last_path, state.epoch)
    emit = (progress if ctx.is_main else None) or (lambda _event: None)
    total_iters = cfg.max_epochs * cfg.iterations_per_epoch
    cap = cfg.max_minutes * 60.0 if cfg.max_minutes else None
    t0 = clock() - state.elapsed
    session_start = (clock(), state.iteration)

    def elapsed() -> float:
        return clock() - t0

    def capped() -> bool:
        """True (and the run marked as stopped by the cap, with its warning) once ``max_minutes`` is spent
        (by rank 0's clock: every rank stops at the same iteration)."""
        if cap is None or not broadcast_flag(ctx, elapsed() >= cap, device):
            return False
        state.stopped_reason = StopReason.TIME_CAP.value
        warning = time_cap_warning(state.iteration, total_iters, float(cfg.max_minutes or 0))
        log.warning("%s training %s", stepper.family, warning)
        state.warnings.append(warning)
        return True

    loader = make_loader(dataset, cfg.batch_size, device, cfg, ctx)
    report_every = max(1, cfg.iterations_per_epoch // 10)
    while state.stopped_reason is None and state.epoch < cfg.max_epochs:
        epoch = state.epoch
        dataset.set_epoch(epoch)
        sums: dict[str, list[float]] = {}
        lr = float("nan")
        n = 0
        for i, batch in enumerate(loader):
            if capped():
                break
            lr = stepper.set_progress(state.iteration / total_iters, epoch)
            if isinstance(stepper, GanStepper):
                stepper.set_lambda(epoch, i)
            try:
                metrics = stepper.train_step(batch, epoch, i)
            except NonFiniteLossError as exc:
                kept = (
                    f"the last good checkpoint (after epoch {epoch - 1}) is kept at {last_path}"
                    if last_path.is_file()
                    else "no checkpoint was written yet"
                )
                raise TrainingDivergedError(
                    f"{stepper.family} training diverged: {exc.name} is {exc.value} at epoch {exc.epoch}, "
                    f"iteration {exc.iteration} (global iteration {state.iteration}); {kept}. Lower "
                    "train.learning_rate or train.grad_clip, or check the preprocessed data for NaNs."
                ) from exc
            for k, v in metrics.items():
                sums.setdefault(k, []).append(float(v))
            state.iteration += 1
            n += 1
            if (i + 1) % report_every == 0:
                now = clock()
                rate = (state.iteration - session_start[1]) / max(now - session_start[0], 1e-9)
                emit(
                    {
                        "event": "iteration",
                        "family": stepper.family,
                        "epoch": epoch,
                        "max_epochs": cfg.max_epochs,
                        "iteration": i + 1,
                        "iterations_per_epoch": cfg.iterations_per_epoch,
                        "global_iteration": state.iteration,
                        "total_iterations": total_iters,
                        "loss": metrics["loss"],
                        "lr": lr,
                        "seconds": elapsed(),
                        "iterations_per_second": rate,
                        "eta_seconds": (total_iters - state.iteration) / rate if rate > 0 else None,
                    }
                )
        if n == 0:
            break
        state.epoch += 1
        means = {k: _mean(v) for k, v in sums.items()}
        record: dict[str, Any] = {"epoch": epoch, "iterations": n, "lr": lr, "seconds": elapsed(), **means}
        warnings = stepper.end_epoch(epoch, means)
        if warnings:
            record["warnings"] = warnings
            state.warnings.extend(warnings)
        if state.stopped_reason is None and state.epoch < cfg.max_epochs:
            capped()
        final = state.stopped_reason is not None or state.epoch >= cfg.max_epochs
        if state.epoch % cfg.val_every == 0 or final:
            _validate_now(stepper, state, val_paths, plan, device, run_dir, run_info, record, ctx)
        state.history.append(record)
        state.elapsed = elapsed()
        if ctx.is_main:
            _save_last(run_dir, stepper, state, run_info)
        emit({"event": "epoch", "family": stepper.family, "max_epochs": cfg.max_epochs,
              "global_iteration": state.iteration, "total_iterations": total_iters, **record})
    if state.stopped_reason is None:
        state.stopped_reason = StopReason.ITERATION_BUDGET.value
    if broadcast_flag(ctx, state.validated_epoch != state.epoch or not (run_dir / BEST).is_file(), device):
        _validate_now(
            stepper,
            state,
            val_paths,
            plan,
            device,
            run_dir,
            run_info,
            state.history[-1] if state.history else None,
            ctx,
        )
        state.elapsed = elapsed()
        if ctx.is_main:
            _save_last(run_dir, stepper, state, run_info)
    barrier(ctx)  # the other ranks read best.pt once rank 0 has written it
    return state
