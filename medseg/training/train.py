"""Entry point of the training stage: ``train_model(ws, cfg, family)`` -> a new model bundle.

Reads the plan, splits and preprocessed stores of the workspace, trains the family's networks
(:mod:`medseg.training.steppers`) with the shared loop (:mod:`medseg.training.loop`) inside a run
directory ``models/<family>/.runs/<run_key>`` (resumable), then writes an immutable bundle
(:mod:`medseg.training.bundle`) and removes the run directory. With ``train.folds`` > 1 it hands over
to :func:`medseg.training.cross_validation.train_folds` (k fold models, one ensemble bundle), which
trains each fold with :func:`train_on_split` like a single run.

Data parallel (``ctx`` active, one call per rank, :mod:`medseg.training.distributed`): every rank
trains; rank 0 writes the bundle and removes the run directory, and every rank returns its result.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medseg.config import MedsegConfig, ModelFamily, TrainConfig
from medseg.io.volume_store import is_complete
from medseg.plan import Plan
from medseg.splits import Splits
from medseg.training.augment import AugmentParams
from medseg.training.budget import StopReason
from medseg.training.bundle import save_bundle
from medseg.training.checkpoint import BEST, LAST, load_checkpoint
from medseg.training.device import configure_threads, resolve_device, uses_amp
from medseg.training.distributed import SINGLE, DistContext, broadcast_object
from medseg.training.fit_budget import fit_epochs, fitted_config
from medseg.training.loop import LoopState, Progress, run_loop
from medseg.training.patches import PatchDataset, load_cases
from medseg.training.steppers import build_stepper
from medseg.training.validate import postprocess_classes
from medseg.training.warm_start import WarmStart, load_into, resolve_warm_start
from medseg.workspace import Workspace

log = logging.getLogger(__name__)

#: A split without validation cases validates on this many training cases (the first of the split): the
#: Dice is optimistic either way, and validating all of a large training set costs minutes of the budget.
VALIDATION_ON_TRAIN_CASES = 20

#: Fields of ``cfg.train`` that do not change the trained model (excluded from the run key).
_NON_MODEL_FIELDS = {
    "max_minutes", "device", "num_threads", "models", "num_workers", "compile_model", "channels_last",
    "promote_capped", "processes", "max_restarts",
    "collective_timeout_minutes",
}


@dataclass
class TrainResult:
    """Summary of one training run (the bundle holds the full details)."""

    family: str
    bundle_path: Path
    version: str
    val_mean_dice: float | None
    val_dice_per_class: dict[str, float | None]
    epochs: int
    iterations: int
    seconds: float
    stopped_reason: str
    planned_iterations: int
    best_epoch: int
    device: str
    warnings: list[str] = field(default_factory=list)
    resumed_from_epoch: int | None = None
    warm_started_from: str | None = None  # champion version the run was initialised from
    warm_start_reason: str | None = None
    folds: int = 1  # > 1: a k-fold ensemble bundle; val_* are then the pooled cross-validation scores
    cv_metrics_path: Path | None = None  # the ensemble's cv_metrics.json

    @property
    def time_capped(self) -> bool:
        """True when ``train.max_minutes`` stopped the run before its iteration budget."""
        return self.stopped_reason == StopReason.TIME_CAP


def case_paths(ws: Workspace, ids: list[str], what: str) -> dict[str, Path]:
    """``{case_id: preprocessed store}`` of ``ids``; raises FileNotFoundError naming a missing store."""
    paths = {cid: ws.preprocessed_case_path(cid) for cid in ids}
    missing = [cid for cid, p in paths.items() if not is_complete(p)]
    if missing:
        raise FileNotFoundError(
            f"{len(missing)} {what} case(s) have no complete preprocessed store, e.g. "
            f"{ws.preprocessed_case_path(missing[0])}; run `medseg preprocess` first"
        )
    return paths


def train_config_key(tcfg: TrainConfig) -> dict[str, Any]:
    """The ``train`` fields that change the trained model, as JSON (``folds`` only when > 1, so the keys of
    single-model runs are those of the versions before k-fold cross-validation)."""
    data = tcfg.model_dump(mode="json", exclude=_NON_MODEL_FIELDS)
    if data.get("folds") == 1:
        del data["folds"]
    return data


def run_key(family: str, plan: Plan, splits: Splits, cfg: MedsegConfig, warm_from: str | None = None) -> str:
    """Hash of everything that determines the trained model (resume only continues the same run).

    ``warm_from`` is the champion version a warm-started run starts from (None: from scratch).
    """
    train_cfg = train_config_key(cfg.train)
    items: list[Any] = [family, plan.plan_hash(), sorted(splits.train), sorted(splits.val), train_cfg, cfg.seed]
    if warm_from is not None:
        items.append({"warm_from": warm_from})
    text = json.dumps(items, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def run_dir_for(ws: Workspace, family: str, key: str) -> Path:
    return ws.model_family_dir(family) / ".runs" / key


def train_model(
    ws: Workspace,
    cfg: MedsegConfig,
    family: ModelFamily | str,
    device: str | None = None,
    progress: Progress | None = None,
    ctx: DistContext = SINGLE,
) -> TrainResult:
    """Train one model family on the workspace's preprocessed data and save a new bundle.

    Args:
        ws: workspace with ``preprocessed/plan.json``, ``splits.json`` and ``cases/*.zarr``.
        cfg: configuration (``cfg.train`` drives everything, ``cfg.seed`` the randomness).
        family: "cnn" or "gan".
        device: overrides ``cfg.train.device`` ("cpu", "cuda", "auto").
        progress: called with event dicts (``event`` = "iteration" | "epoch", epoch, loss, lr,
            seconds, val_mean_dice ...); on rank 0 only.
        ctx: this rank of a data-parallel run (called on every rank; rank 0 writes the bundle).

    Returns:
        TrainResult with the bundle path and validation Dice of the shipped (best) weights; with
        ``train.folds`` > 1, of the ensemble bundle and its pooled cross-validation Dice.

    Raises:
        FileNotFoundError: plan, splits or preprocessed cases missing.
        TrainingDivergedError: NaN/inf loss (checkpoints of the last good epoch are kept).
    """
    family = str(ModelFamily(str(family)))
    if cfg.train.folds > 1 and ctx.active:
        raise ValueError(f"train.folds={cfg.train.folds} cannot train data-parallel yet: set train.processes=1")
    if cfg.train.folds > 1:
        from medseg.training.cross_validation import train_folds  # imports this module

        return train_folds(ws, cfg, family, device, progress)
    started = time.time()
    plan = Plan.load(ws.plan_path)
    splits = load_splits(ws)
    val_ids = list(splits.val)
    validation_on_train = not val_ids
    if validation_on_train:
        log.warning("split has no validation case: validating on %d of the training cases (Dice will be optimistic)",
                    min(len(splits.train), VALIDATION_ON_TRAIN_CASES))
        val_ids = list(splits.train)[:VALIDATION_ON_TRAIN_CASES]

    warm = resolve_warm_start(ws, family, plan, cfg.train)
    tcfg = cfg.train
    if warm.active:  # nightly fine-tuning: old + new cases, smaller budget
        tcfg = tcfg.model_copy(update={"max_epochs": min(tcfg.max_epochs, tcfg.warm_start_max_epochs)})
    configure_threads(tcfg)
    dev = ctx.device(resolve_device(device if device is not None else tcfg.device))
    key = run_key(family, plan, splits, cfg, warm_from=warm.version)
    run_dir = run_dir_for(ws, family, key)
    run = train_on_split(ws, family, plan, tcfg, list(splits.train), val_ids, cfg.seed, dev, run_dir,
                         {"run_key": key, "warm_started_from": warm.version}, warm, progress, ctx)
    state, best, tcfg = run.state, run.best, run.tcfg
    validation = dict(best["validation"])
    training = {
        **training_record(run, dev, cfg.seed, key, warm),
        "validation_on_train_cases": validation_on_train,
        "wall_seconds_this_session": time.time() - started,
        "processes": ctx.world_size,
    }
    bundle_path = broadcast_object(ctx, _save_bundle_main(
        ctx, ws, family, plan, best, tcfg, validation, training, splits, val_ids, state, run_dir))
    assert bundle_path is not None  # rank 0 always returns the bundle it wrote
    return TrainResult(
        family=family,
        bundle_path=bundle_path,
        version=bundle_path.name,
        val_mean_dice=validation.get("mean_dice"),
        val_dice_per_class=dict(validation.get("mean_dice_per_class", {})),
        epochs=state.epoch,
        iterations=state.iteration,
        seconds=state.elapsed,
        stopped_reason=str(state.stopped_reason),
        planned_iterations=tcfg.max_epochs * tcfg.iterations_per_epoch,
        best_epoch=state.best_epoch,
        device=str(dev),
        warnings=list(state.warnings),
        resumed_from_epoch=state.resumed_from_epoch,
        warm_started_from=warm.version,
        warm_start_reason=warm.reason,
    )


def _save_bundle_main(
    ctx: DistContext,
    ws: Workspace,
    family: str,
    plan: Plan,
    best: dict[str, Any],
    tcfg: TrainConfig,
    validation: dict[str, Any],
    training: dict[str, Any],
    splits: Splits,
    val_ids: list[str],
    state: LoopState,
    run_dir: Path,
) -> Path | None:
    """On rank 0: write the bundle (with ``best``'s weights), remove the run directory, return the bundle;
    None on the other ranks."""
    if not ctx.is_main:
        return None
    bundle_path = save_bundle(
        ws,
        family,
        plan,
        best["model"],
        deep_supervision=tcfg.deep_supervision,
        validation=validation,
        training=training,
        postprocessing={"keep_largest_component": postprocess_classes(validation, plan.label_names)},
        train_cases=list(splits.train),
        val_cases=val_ids,
        history=state.history,
        checkpoint_files={BEST: run_dir / BEST, LAST: run_dir / LAST},
    )
    remove_run_dir(run_dir)
    return bundle_path


def load_splits(ws: Workspace) -> Splits:
    """The workspace's train / val / test split (FileNotFoundError when preprocessing has not run)."""
    if not ws.splits_path.is_file():
        raise FileNotFoundError(f"splits not found: {ws.splits_path} (run `medseg preprocess` first)")
    return Splits.load(ws.splits_path)


@dataclass
class SplitRun:
    """One trained network: the loop's final state, its best checkpoint, the config it trained with."""

    state: LoopState
    best: dict[str, Any]  # the best checkpoint: ``model`` and ``validation``
    tcfg: TrainConfig  # ``max_epochs`` as planned by ``fit_minutes`` when set
    fitted_budget: dict[str, Any] | None  # what ``fit_minutes`` measured and planned (None without it)


def train_on_split(
    ws: Workspace,
    family: str,
    plan: Plan,
    tcfg: TrainConfig,
    train_ids: list[str],
    val_ids: list[str],
    seed: int,
    dev: torch.device,
    run_dir: Path,
    run_info: dict[str, Any],
    warm: WarmStart,
    progress: Progress | None,
    ctx: DistContext = SINGLE,
) -> SplitRun:
    """Train one network of ``family`` on ``train_ids``, validating on ``val_ids``, inside ``run_dir``.

    The torch and numpy RNGs are seeded with ``seed`` first, so the weights depend only on the config,
    the cases and ``seed`` (a resumed run continues from ``run_dir/last.pt``). With an active ``ctx``
    every rank calls this and trains its slice of each batch (``train.fit_minutes`` is then refused).

    Returns:
        the final loop state, the best checkpoint and the config trained with (see :class:`SplitRun`).
    """
    train_paths = case_paths(ws, train_ids, "train")
    val_paths = case_paths(ws, val_ids, "validation")
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    run_dir.mkdir(parents=True, exist_ok=True)
    info = {"family": family, "plan_hash": plan.plan_hash(), "seed": seed, **run_info}
    stepper = build_stepper(family, plan, tcfg, dev, ctx)
    load_into(stepper.model, warm)  # a resumed run then overwrites this with its own last.pt
    dataset = PatchDataset(
        load_cases(train_paths),
        plan.patch_size,
        tcfg.iterations_per_epoch * tcfg.batch_size,
        tcfg.foreground_oversample,
        seed=seed,
        augment=AugmentParams(),
        spatial_dims=plan.spatial_dims,
        defer_augmentation=tcfg.gpu_augmentation,
        batch_size=tcfg.batch_size,
    )
    if ctx.active and tcfg.fit_minutes is not None:
        raise ValueError("train.fit_minutes cannot plan a data-parallel run yet: set train.max_epochs instead "
                         "(or train.processes=1)")
    tcfg, fitted = fitted_config(tcfg, run_dir, lambda: fit_epochs(stepper, dataset, val_paths, plan, tcfg, dev))
    state = run_loop(stepper, dataset, val_paths, plan, tcfg, run_dir, dev, info, progress, ctx=ctx)
    return SplitRun(state, load_checkpoint(run_dir / BEST), tcfg, fitted)


def training_record(run: SplitRun, dev: torch.device, seed: int, key: str, warm: WarmStart) -> dict[str, Any]:
    """The ``training`` metadata of one trained network (budget, stop reason, device, config ...)."""
    state, tcfg = run.state, run.tcfg
    return {
        "epochs": state.epoch,
        "iterations": state.iteration,
        "seconds": state.elapsed,
        "stopped_reason": state.stopped_reason,
        "planned_iterations": tcfg.max_epochs * tcfg.iterations_per_epoch,
        "time_capped": state.stopped_reason == StopReason.TIME_CAP,
        "best_epoch": state.best_epoch,
        "resumed_from_epoch": state.resumed_from_epoch,
        "device": str(dev),
        "amp": "bf16" if uses_amp(dev, tcfg.amp) else None,
        "seed": seed,
        "run_key": key,
        "config": tcfg.model_dump(mode="json"),
        "warm_started_from": warm.source,
        "warm_start_reason": warm.reason,
        "warnings": list(state.warnings),
        "fitted_budget": run.fitted_budget,
    }


def remove_run_dir(run_dir: Path) -> None:
    """Remove a finished run's directory (and ``.runs`` when no other run is in progress)."""
    shutil.rmtree(run_dir, ignore_errors=True)
    with contextlib.suppress(OSError):
        run_dir.parent.rmdir()
