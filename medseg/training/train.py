"""Entry point of the training stage: ``train_model(ws, cfg, family)`` -> a new model bundle.

Reads the plan, splits and preprocessed stores of the workspace, trains the family's networks
(:mod:`medseg.training.steppers`) with the shared loop (:mod:`medseg.training.loop`) inside a run
directory ``models/<family>/.runs/<run_key>`` (resumable), then writes an immutable bundle
(:mod:`medseg.training.bundle`) and removes the run directory.
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

from medseg.config import MedsegConfig, ModelFamily
from medseg.io.volume_store import is_complete
from medseg.plan import Plan
from medseg.splits import Splits
from medseg.training.augment import AugmentParams
from medseg.training.budget import StopReason
from medseg.training.bundle import save_bundle
from medseg.training.checkpoint import BEST, LAST, load_checkpoint
from medseg.training.device import configure_threads, resolve_device, uses_amp
from medseg.training.fit_budget import fit_epochs, fitted_config
from medseg.training.loop import Progress, run_loop
from medseg.training.patches import PatchDataset, load_cases
from medseg.training.steppers import build_stepper
from medseg.training.validate import postprocess_classes
from medseg.training.warm_start import load_into, resolve_warm_start
from medseg.workspace import Workspace

log = logging.getLogger(__name__)

#: Fields of ``cfg.train`` that do not change the trained model (excluded from the run key).
_NON_MODEL_FIELDS = {
    "max_minutes", "device", "num_threads", "models", "num_workers", "compile_model", "channels_last",
    "promote_capped",
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

    @property
    def time_capped(self) -> bool:
        """True when ``train.max_minutes`` stopped the run before its iteration budget."""
        return self.stopped_reason == StopReason.TIME_CAP


def _case_paths(ws: Workspace, ids: list[str], what: str) -> dict[str, Path]:
    paths = {cid: ws.preprocessed_case_path(cid) for cid in ids}
    missing = [cid for cid, p in paths.items() if not is_complete(p)]
    if missing:
        raise FileNotFoundError(
            f"{len(missing)} {what} case(s) have no complete preprocessed store, e.g. "
            f"{ws.preprocessed_case_path(missing[0])}; run `medseg preprocess` first"
        )
    return paths


def run_key(family: str, plan: Plan, splits: Splits, cfg: MedsegConfig, warm_from: str | None = None) -> str:
    """Hash of everything that determines the trained model (resume only continues the same run).

    ``warm_from`` is the champion version a warm-started run starts from (None: from scratch).
    """
    train_cfg = cfg.train.model_dump(mode="json", exclude=_NON_MODEL_FIELDS)
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
) -> TrainResult:
    """Train one model family on the workspace's preprocessed data and save a new bundle.

    Args:
        ws: workspace with ``preprocessed/plan.json``, ``splits.json`` and ``cases/*.zarr``.
        cfg: configuration (``cfg.train`` drives everything, ``cfg.seed`` the randomness).
        family: "cnn" or "gan".
        device: overrides ``cfg.train.device`` ("cpu", "cuda", "auto").
        progress: called with event dicts (``event`` = "iteration" | "epoch", epoch, loss, lr,
            seconds, val_mean_dice ...).

    Returns:
        TrainResult with the bundle path and validation Dice of the shipped (best) weights.

    Raises:
        FileNotFoundError: plan, splits or preprocessed cases missing.
        TrainingDivergedError: NaN/inf loss (checkpoints of the last good epoch are kept).
    """
    family = str(ModelFamily(str(family)))
    started = time.time()
    plan = Plan.load(ws.plan_path)
    if not ws.splits_path.is_file():
        raise FileNotFoundError(f"splits not found: {ws.splits_path} (run `medseg preprocess` first)")
    splits = Splits.load(ws.splits_path)
    train_paths = _case_paths(ws, splits.train, "train")
    val_ids = list(splits.val)
    validation_on_train = not val_ids
    if validation_on_train:
        log.warning("split has no validation case: validating on the training cases (Dice will be optimistic)")
        val_ids = list(splits.train)
    val_paths = _case_paths(ws, val_ids, "validation")

    warm = resolve_warm_start(ws, family, plan, cfg.train)
    tcfg = cfg.train
    if warm.active:  # nightly fine-tuning: old + new cases, smaller budget
        tcfg = tcfg.model_copy(update={"max_epochs": min(tcfg.max_epochs, tcfg.warm_start_max_epochs)})
    configure_threads(tcfg)
    dev = resolve_device(device if device is not None else tcfg.device)
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed % 2**32)

    key = run_key(family, plan, splits, cfg, warm_from=warm.version)
    run_dir = run_dir_for(ws, family, key)
    run_dir.mkdir(parents=True, exist_ok=True)
    run_info = {"family": family, "run_key": key, "plan_hash": plan.plan_hash(), "seed": cfg.seed,
                "warm_started_from": warm.version}

    stepper = build_stepper(family, plan, tcfg, dev)
    load_into(stepper.model, warm)  # a resumed run then overwrites this with its own last.pt
    cases = load_cases(train_paths)
    dataset = PatchDataset(
        cases,
        plan.patch_size,
        tcfg.iterations_per_epoch * tcfg.batch_size,
        tcfg.foreground_oversample,
        seed=cfg.seed,
        augment=AugmentParams(),
        spatial_dims=plan.spatial_dims,
        defer_augmentation=tcfg.gpu_augmentation,
        batch_size=tcfg.batch_size,
    )
    tcfg, fitted = fitted_config(
        tcfg, run_dir, lambda: fit_epochs(stepper, dataset, val_paths, plan, tcfg, dev)
    )
    state = run_loop(stepper, dataset, val_paths, plan, tcfg, run_dir, dev, run_info, progress)

    best = load_checkpoint(run_dir / BEST)
    validation = dict(best["validation"])
    training = {
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
        "seed": cfg.seed,
        "run_key": key,
        "validation_on_train_cases": validation_on_train,
        "config": tcfg.model_dump(mode="json"),
        "warm_started_from": warm.source,
        "warm_start_reason": warm.reason,
        "warnings": state.warnings,
        "fitted_budget": fitted,
        "wall_seconds_this_session": time.time() - started,
    }
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
    shutil.rmtree(run_dir, ignore_errors=True)
    with contextlib.suppress(OSError):
        run_dir.parent.rmdir()  # only when no other run is in progress
    per_class: dict[str, Any] = validation.get("mean_dice_per_class", {})
    return TrainResult(
        family=family,
        bundle_path=bundle_path,
        version=bundle_path.name,
        val_mean_dice=validation.get("mean_dice"),
        val_dice_per_class=per_class,
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
