"""Warm start (nightly fine-tuning): initialise a run from the family's champion bundle.

With ``train.warm_start`` the segmenter starts from the champion's weights when the champion was
trained with the *same plan* (plan hash): same preprocessing, topology and classes, so its weights fit
and its predictions are comparable. The run then trains on the current training split (old + new
cases) with the smaller budget ``train.warm_start_max_epochs``. Any other situation (no champion, a
different plan, unloadable weights, an ensemble champion) falls back to full training and says why.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from medseg.config import TrainConfig
from medseg.io.bundle import ENSEMBLE, BundleError, bundle_kind, read_metadata
from medseg.plan import Plan
from medseg.training.bundle import MODEL_FILE
from medseg.training.promotion import champion
from medseg.workspace import Workspace

log = logging.getLogger(__name__)


@dataclass
class WarmStart:
    """Outcome of the warm-start check: ``state_dict`` is None when training starts from scratch."""

    reason: str
    source: dict[str, Any] | None = None  # {"family", "version", "path", "plan_hash", "val_mean_dice"}
    state_dict: dict[str, torch.Tensor] | None = None

    @property
    def active(self) -> bool:
        return self.state_dict is not None

    @property
    def version(self) -> str | None:
        return None if self.source is None else str(self.source["version"])


def resolve_warm_start(ws: Workspace, family: str, plan: Plan, cfg: TrainConfig) -> WarmStart:
    """Decide whether this run starts from the champion of ``family`` and load its weights if so.

    Args:
        ws: workspace (``models/<family>/champion.json``).
        family: model family ("cnn" / "gan"); a GAN warm-starts its segmenter, not the discriminator.
        plan: the plan of the current run.
        cfg: training config (``warm_start``).

    Returns:
        A :class:`WarmStart`; its ``reason`` is logged (a warning when a requested warm start is refused).
    """
    if not cfg.warm_start:
        return WarmStart("train.warm_start is false: full training")
    path: Path | None = champion(ws, family)
    if path is None:
        ws_reason = f"no {family} champion in {ws.model_family_dir(family)}: full training"
        log.info("warm start requested but %s", ws_reason)
        return WarmStart(ws_reason)
    try:
        meta = read_metadata(path)
    except BundleError as exc:
        reason = f"champion {path} is unreadable ({exc}): full training"
        log.warning("warm start refused: %s", reason)
        return WarmStart(reason)
    if bundle_kind(meta) == ENSEMBLE:
        reason = f"champion {path.name} is a k-fold ensemble (no single set of weights to start from): full training"
        log.warning("warm start refused: %s", reason)
        return WarmStart(reason)
    if meta.get("plan_hash") != plan.plan_hash():
        reason = (
            f"champion {path.name} was trained with plan {meta.get('plan_hash')} but the current plan is "
            f"{plan.plan_hash()} (preprocessing or network topology changed): full training with "
            f"{cfg.max_epochs} epochs; freeze the plan (preprocess.freeze_plan) to fine-tune nightly"
        )
        log.warning("warm start refused: %s", reason)
        return WarmStart(reason)
    try:
        state = torch.load(path / MODEL_FILE, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt / truncated file
        reason = f"cannot read {path / MODEL_FILE} ({type(exc).__name__}: {exc}): full training"
        log.warning("warm start refused: %s", reason)
        return WarmStart(reason)
    source = {
        "family": family,
        "version": str(meta.get("version", path.name)),
        "path": str(path),
        "plan_hash": plan.plan_hash(),
        "val_mean_dice": (meta.get("validation") or {}).get("mean_dice"),
    }
    reason = (
        f"warm start from {family} champion {source['version']}, "
        f"{min(cfg.max_epochs, cfg.warm_start_max_epochs)} epochs"
    )
    log.info(reason)
    return WarmStart(reason, source, dict(state))


def load_into(model: torch.nn.Module, warm: WarmStart) -> list[str]:
    """Copy the champion weights into ``model``; returns the names of parameters left at their
    initialisation (deep-supervision heads when the champion was trained without them).

    Raises:
        RuntimeError: a stored tensor does not fit the model (cannot happen with equal plan hashes).
    """
    if warm.state_dict is None:
        return []
    result = model.load_state_dict(warm.state_dict, strict=False)
    if result.unexpected_keys:
        log.info("warm start: champion tensors not used by this network: %s", result.unexpected_keys)
    if result.missing_keys:
        log.info("warm start: parameters not in the champion, left initialised: %s", result.missing_keys)
    return list(result.missing_keys)
