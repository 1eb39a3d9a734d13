"""One optimisation step of each model family (the part of the loop that differs between CNN and GAN).

A stepper owns its networks, optimisers and LR schedulers; :mod:`medseg.training.loop` drives it.
``train_step`` returns float metrics (always ``"loss"``) and raises :class:`NonFiniteLossError`
*before* any weight update when a loss is NaN/inf.

In a data-parallel run (a :class:`~medseg.training.distributed.DistContext` with ``active``) each
network is wrapped in ``DistributedDataParallel`` (gradients averaged over the ranks), the
segmentation loss sums its batch-Dice terms over the ranks, and every reported metric is the mean
over the ranks: the metrics and the NaN check are the same on every rank (all ranks stop together)
and equal those of one process training on the whole batch.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from medseg.config import GanConfig, TrainConfig
from medseg.plan import Plan
from medseg.training.device import autocast, memory_format
from medseg.training.distributed import SINGLE, DistContext, mean_over_ranks
from medseg.training.gpu_augment import augment_batch
from medseg.training.losses import (
    SegmentationLoss,
    discriminator_accuracy,
    lsgan_discriminator_loss,
    lsgan_generator_loss,
)
from medseg.training.network import build_discriminator, build_segmenter
from medseg.training.optim import PolyLR, build_discriminator_optimizer, build_sgd

log = logging.getLogger(__name__)


class NonFiniteLossError(RuntimeError):
    """A training loss became NaN or infinite (no weights were updated with it)."""

    def __init__(self, name: str, value: float, epoch: int, iteration: int) -> None:
        self.name, self.value, self.epoch, self.iteration = name, value, epoch, iteration
        super().__init__(f"{name} is {value} at epoch {epoch}, iteration {iteration}")


def _check(loss: torch.Tensor, name: str, epoch: int, iteration: int, ctx: DistContext = SINGLE) -> float:
    """``loss`` (its mean over the ranks) as a float; NonFiniteLossError when it is NaN/inf (on every rank)."""
    mean = mean_over_ranks(ctx, loss)
    value = float(mean)
    if not torch.isfinite(mean).all():
        raise NonFiniteLossError(name, value, epoch, iteration)
    return value


def data_parallel(module: nn.Module, ctx: DistContext, device: torch.device) -> nn.Module:
    """``module`` wrapped in ``DistributedDataParallel`` for an active ``ctx`` (else ``module`` itself)."""
    if not ctx.active:
        return module
    ids = [device.index] if device.type == "cuda" and device.index is not None else None
    return nn.parallel.DistributedDataParallel(module, device_ids=ids)


class CnnStepper:
    """Supervised segmenter: deep-supervised DiceCE, SGD Nesterov, poly LR, gradient clipping."""

    family = "cnn"

    def __init__(self, plan: Plan, cfg: TrainConfig, device: torch.device, ctx: DistContext = SINGLE) -> None:
        self.plan, self.cfg, self.device, self.ctx = plan, cfg, device, ctx
        self.memory_format = memory_format(device, plan.spatial_dims, cfg.channels_last)
        self.model = build_segmenter(plan, cfg.deep_supervision).to(device)
        if self.memory_format != torch.contiguous_format:
            self.model.to(memory_format=self.memory_format)  # type: ignore[call-overload]
        #: what the step calls: the model, its DDP wrapper and/or its ``torch.compile`` wrapper (same parameters)
        self.forward_model: nn.Module = data_parallel(self.model, ctx, device)
        if cfg.compile_model:
            self.forward_model = torch.compile(self.forward_model)  # type: ignore[assignment]
        self.loss_fn = SegmentationLoss(ctx)
        self.optimizer = build_sgd(self.model.parameters(), cfg)
        self.scheduler = PolyLR(self.optimizer, cfg.learning_rate)

    # -- state ------------------------------------------------------------------------------
    def modules(self) -> dict[str, nn.Module]:
        return {"model": self.model}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"model": self.optimizer}

    def schedulers(self) -> dict[str, PolyLR]:
        return {"model": self.scheduler}

    def set_progress(self, progress: float, epoch: int) -> float:
        """Set LR for overall progress in [0, 1]; returns the segmenter LR."""
        return self.scheduler.set_progress(progress)

    def state_dict(self) -> dict[str, Any]:
        return {
            "modules": {k: m.state_dict() for k, m in self.modules().items()},
            "optimizers": {k: o.state_dict() for k, o in self.optimizers().items()},
            "schedulers": {k: s.state_dict() for k, s in self.schedulers().items()},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for k, m in self.modules().items():
            m.load_state_dict(state["modules"][k])
        for k, o in self.optimizers().items():
            o.load_state_dict(state["optimizers"][k])
        for k, s in self.schedulers().items():
            s.load_state_dict(state["schedulers"][k])

    # -- training ---------------------------------------------------------------------------
    def _batch(self, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        """``(image, label)`` on the device; deferred augmentation (``"aug"``) is applied here."""
        x = batch["image"].to(self.device, non_blocking=True)
        y = batch["label"].to(self.device, non_blocking=True)
        if "aug" in batch:
            x, y = augment_batch(x, y, batch["aug"])
        return x.contiguous(memory_format=self.memory_format), y

    def train_step(self, batch: dict[str, Any], epoch: int, iteration: int) -> dict[str, float]:
        x, y = self._batch(batch)
        self.model.train()
        with autocast(self.device, self.cfg.amp):
            out = self.forward_model(x)
        loss = self.loss_fn(out, y)
        value = _check(loss, "segmentation loss", epoch, iteration, self.ctx)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
        self.optimizer.step()
        return {"loss": value}

    def end_epoch(self, epoch: int, metrics: dict[str, float]) -> list[str]:
        """Epoch-level checks; returns warning messages (none for the CNN)."""
        return []


def adversarial_weight(cfg: GanConfig, epoch: int, iteration_in_epoch: int, iterations_per_epoch: int) -> float:
    """λ schedule: 0 for ``warmup_epochs`` epochs, then a linear ramp to ``adversarial_weight`` over the
    next ``warmup_epochs`` epochs (per iteration, so there is no jump); no warm-up when it is 0."""
    if cfg.warmup_epochs == 0:
        return float(cfg.adversarial_weight)
    t = epoch + iteration_in_epoch / max(1, iterations_per_epoch)
    ramp = (t - cfg.warmup_epochs) / cfg.warmup_epochs
    return float(cfg.adversarial_weight * min(max(ramp, 0.0), 1.0))


class GanStepper(CnnStepper):
    """Segmenter (generator) + PatchGAN discriminator on ``image ⊕ class probabilities``.

    D sees ``image ⊕ one-hot(gt)`` as real and ``image ⊕ softmax(pred)`` as fake (LSGAN loss, Adam).
    G minimises ``DiceCE + λ · LSGAN_adv`` with the λ warm-up of :func:`adversarial_weight`.
    """

    family = "gan"
    #: epoch-mean D accuracy above which D is reported as dominating, below which as collapsed.
    DOMINANT_ACC = 0.99
    CHANCE_ACC = 0.55
    #: consecutive epochs a condition must hold before it is reported (once per run).
    PATIENCE = 3

    def __init__(self, plan: Plan, cfg: TrainConfig, device: torch.device, ctx: DistContext = SINGLE) -> None:
        super().__init__(plan, cfg, device, ctx)
        self.gan = cfg.gan
        self.discriminator = build_discriminator(
            plan.in_channels + plan.num_classes, cfg.gan.discriminator_channels, plan.spatial_dims
        ).to(device)
        #: the discriminator's own step goes through DDP (its gradients are averaged over the ranks); the
        #: generator's step calls the frozen ``discriminator`` itself (no gradient of D to synchronise)
        self.d_forward = data_parallel(self.discriminator, ctx, device)
        self.d_optimizer = build_discriminator_optimizer(self.discriminator.parameters(), cfg.gan)
        self.d_scheduler = PolyLR(self.d_optimizer, cfg.gan.discriminator_lr)
        self.lam = 0.0
        self._streaks = {"dominates": 0, "chance": 0}
        self._reported: set[str] = set()

    def modules(self) -> dict[str, nn.Module]:
        return {"model": self.model, "discriminator": self.discriminator}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"model": self.optimizer, "discriminator": self.d_optimizer}

    def schedulers(self) -> dict[str, PolyLR]:
        return {"model": self.scheduler, "discriminator": self.d_scheduler}

    def set_progress(self, progress: float, epoch: int) -> float:
        self.d_scheduler.set_progress(progress)
        return self.scheduler.set_progress(progress)

    def set_lambda(self, epoch: int, iteration_in_epoch: int) -> float:
        self.lam = adversarial_weight(self.gan, epoch, iteration_in_epoch, self.cfg.iterations_per_epoch)
        return self.lam

    def train_step(self, batch: dict[str, Any], epoch: int, iteration: int) -> dict[str, float]:
        x, y = self._batch(batch)
        self.model.train()
        self.discriminator.train()
        with autocast(self.device, self.cfg.amp):
            out = self.forward_model(x)
        main = out[:, 0] if out.dim() == y.dim() + 1 else out
        probs = torch.softmax(main.float(), dim=1)
        onehot = F.one_hot(y[:, 0], self.plan.num_classes).movedim(-1, 1).float()
        real = torch.cat([x, onehot], dim=1)

        # discriminator step first (generator output detached)
        self.discriminator.requires_grad_(True)
        with autocast(self.device, self.cfg.amp):
            d_real = self.d_forward(real)
            d_fake = self.d_forward(torch.cat([x, probs.detach()], dim=1))
        d_loss = lsgan_discriminator_loss(d_real, d_fake)
        d_value = _check(d_loss, "discriminator loss", epoch, iteration, self.ctx)
        d_acc = float(mean_over_ranks(self.ctx, torch.tensor(discriminator_accuracy(d_real, d_fake))))
        self.d_optimizer.zero_grad(set_to_none=True)
        d_loss.backward()
        torch.nn.utils.clip_grad_norm_(self.discriminator.parameters(), self.cfg.grad_clip)
        self.d_optimizer.step()

        # generator step against the updated, frozen discriminator
        seg = self.loss_fn(out, y)
        seg_value = _check(seg, "segmentation loss", epoch, iteration, self.ctx)
        self.discriminator.requires_grad_(False)
        try:
            with autocast(self.device, self.cfg.amp):
                g_scores = self.discriminator(torch.cat([x, probs], dim=1))
            adv = lsgan_generator_loss(g_scores)
            adv_value = _check(adv, "adversarial loss", epoch, iteration, self.ctx)
            g_loss = seg + self.lam * adv if self.lam > 0 else seg
            g_value = _check(g_loss, "generator loss", epoch, iteration, self.ctx)
            self.optimizer.zero_grad(set_to_none=True)
            g_loss.backward()
        finally:
            self.discriminator.requires_grad_(True)
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
        self.optimizer.step()
        return {
            "loss": g_value,
            "seg_loss": seg_value,
            "g_adv": adv_value,
            "d_loss": d_value,
            "d_acc": d_acc,
            "lambda": self.lam,
        }

    def end_epoch(self, epoch: int, metrics: dict[str, float]) -> list[str]:
        """Warn when the discriminator dominates (D acc ~1, G adversarial gradients vanish) or has
        collapsed to chance after the warm-up (it no longer tells ground truth from predictions)."""
        acc, d_loss = metrics.get("d_acc"), metrics.get("d_loss")
        warnings: list[str] = []
        if acc is None or d_loss is None:
            return warnings
        conditions = {
            "dominates": acc >= self.DOMINANT_ACC and d_loss < 0.01,
            "chance": acc <= self.CHANCE_ACC and epoch >= self.gan.warmup_epochs,
        }
        for name, holds in conditions.items():
            self._streaks[name] = self._streaks[name] + 1 if holds else 0
        if self._streaks["dominates"] >= self.PATIENCE and "dominates" not in self._reported:
            self._reported.add("dominates")
            warnings.append(
                f"GAN epoch {epoch}: discriminator collapse (dominates) for {self.PATIENCE} epochs: accuracy "
                f"{acc:.3f}, loss {d_loss:.4f}; adversarial gradients to the segmenter vanish - lower "
                "train.gan.discriminator_lr"
            )
        if self._streaks["chance"] >= self.PATIENCE and "chance" not in self._reported:
            self._reported.add("chance")
            warnings.append(
                f"GAN epoch {epoch}: discriminator at chance level for {self.PATIENCE} epochs: accuracy {acc:.3f}, "
                f"loss {d_loss:.4f}; it no longer separates ground truth from predictions. Expected once the "
                "segmenter is good (check validation Dice); otherwise raise train.gan.discriminator_lr or "
                "train.gan.discriminator_channels"
            )
        for w in warnings:
            log.warning(w)
        return warnings


def build_stepper(
    family: str, plan: Plan, cfg: TrainConfig, device: torch.device, ctx: DistContext = SINGLE
) -> CnnStepper:
    """The stepper of ``family`` ("cnn" or "gan"); data-parallel over the ranks of ``ctx`` when active."""
    if family == "cnn":
        return CnnStepper(plan, cfg, device, ctx)
    if family == "gan":
        return GanStepper(plan, cfg, device, ctx)
    raise ValueError(f"unknown model family {family!r}; expected 'cnn' or 'gan'")
