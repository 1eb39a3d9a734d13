"""Model bundles (the model registry) and champion promotion.

A bundle is an immutable directory ``<workspace>/models/<family>/<version>/`` with::

    model.pt          segmenter state_dict (best validation epoch)
    metadata.json     see :func:`save_bundle` (on-disk format: :mod:`medseg.io.bundle`)
    history.json      per-epoch training log
    curves.png        train loss and validation Dice per epoch
    checkpoints/      best.pt, last.pt (full training state, for inspection / fine-tuning)

``version`` = UTC timestamp + 8 hex digits of the weights hash; a version directory is never
overwritten. ``<workspace>/models/<family>/champion.json`` points at the promoted bundle.

A k-fold ensemble (``train.folds`` > 1, :func:`save_ensemble_bundle`) holds one member folder per fold
instead of the top-level weights::

    metadata.json     kind "ensemble", ensemble {folds, members, combine}, pooled cross-validation scores
    cv_metrics.json   per fold and pooled over the out-of-fold cases (:func:`medseg.io.bundle.write_cv_metrics`)
    fold_<i>/         model.pt, history.json, curves.png, checkpoints/ of fold i
    curves.png        fold 0's curves (what reports embed)
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import platform
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import monai
import numpy as np
import torch
from torch import nn

import medseg
from medseg.io.bundle import (
    ENSEMBLE,
    METADATA_FILE,
    SINGLE,
    BundleError,
    member_dirs,
    read_metadata,
    write_bundle_json,
    write_cv_metrics,
    write_metadata,
)
from medseg.io.volume_store import read_meta
from medseg.plan import Plan
from medseg.training.curves import plot_curves
from medseg.training.network import build_segmenter
from medseg.workspace import Workspace

log = logging.getLogger(__name__)

MODEL_FILE = "model.pt"
HISTORY_FILE = "history.json"
CURVES_FILE = "curves.png"
CHECKPOINT_DIR = "checkpoints"


#: how an ensemble bundle combines its members (inference averages their softmax probabilities)
COMBINE_MEAN_SOFTMAX = "mean_softmax"


@dataclass
class ModelBundle:
    """A loaded bundle: the segmenter (eval mode, CPU unless moved) and everything needed to use it.

    ``networks`` holds every member of an ensemble bundle (fold order); for a single model it is
    ``[network]``. ``network`` is the first member.
    """

    path: Path
    family: str
    version: str
    plan: Plan
    network: nn.Module
    metadata: dict[str, Any]
    networks: list[nn.Module] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.networks:
            self.networks = [self.network]

    @property
    def label_names(self) -> dict[int, str]:
        return dict(self.plan.label_names)

    @property
    def is_ensemble(self) -> bool:
        return len(self.networks) > 1

    def to(self, device: torch.device | str) -> ModelBundle:
        for net in self.networks:
            net.to(device)
        return self


@dataclass
class FoldModel:
    """One member of an ensemble bundle: the weights of its best epoch and how it was trained and validated."""

    state_dict: dict[str, torch.Tensor]
    history: list[dict[str, Any]]
    train_cases: list[str]
    val_cases: list[str]
    validation: dict[str, Any]
    training: dict[str, Any]
    checkpoint_files: dict[str, Path] = field(default_factory=dict)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def library_versions() -> dict[str, str]:
    return {
        "torch": torch.__version__,
        "monai": monai.__version__,
        "medseg": medseg.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
    }


def input_contract(plan: Plan) -> dict[str, Any]:
    """What the network expects (the output of ``medseg.preprocess.case.preprocess_image``)."""
    return {
        "channels": plan.in_channels,
        **({"channel_names": plan.channel_names,
            "channel_normalization": {c.name: str(c.normalization) for c in plan.channels}} if plan.channels else {}),
        "axis_order": ["z", "y", "x"],
        "dtype": "float32",
        "spacing_mm": list(plan.target_spacing),
        "normalization": str(plan.normalization),
        "clip_range": list(plan.clip_range) if plan.clip_range else None,
        "intensity_mean": plan.intensity_mean,
        "intensity_std": plan.intensity_std,
        "patch_size": list(plan.patch_size),
        "spatial_dims": plan.spatial_dims,
        "output": f"{plan.num_classes} class logits (softmax over dim 1), class 0 = background",
    }


def training_data_snapshot(ws: Workspace, train_ids: list[str]) -> dict[str, Any]:
    """Hash of the sorted train case ids and the provenance (``source``) of their preprocessed stores."""
    source_hashes: dict[str, str] = {}
    for cid in sorted(train_ids):
        meta = read_meta(ws.preprocessed_case_path(cid))
        text = json.dumps(meta.get("source", {}), sort_keys=True, default=str)
        source_hashes[cid] = hashlib.sha256(text.encode()).hexdigest()[:16]
    text = json.dumps(sorted(source_hashes.items()))
    return {"snapshot_hash": hashlib.sha256(text.encode()).hexdigest()[:16], "source_hashes": source_hashes}


def _new_version(weights_sha: str) -> str:
    return f"{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%S%fZ}-{weights_sha[:8]}"


def save_bundle(
    ws: Workspace,
    family: str,
    plan: Plan,
    state_dict: dict[str, torch.Tensor],
    *,
    deep_supervision: bool,
    validation: dict[str, Any],
    training: dict[str, Any],
    train_cases: list[str],
    val_cases: list[str],
    history: list[dict[str, Any]],
    checkpoint_files: dict[str, Path] | None = None,
    postprocessing: dict[str, Any] | None = None,
) -> Path:
    """Write a new immutable bundle ``ws.model_family_dir(family)/<version>`` and return its path.

    Args:
        ws: workspace.
        family: model family ("cnn" / "gan").
        plan: the plan the model was trained with (stored in full with its hash).
        state_dict: segmenter weights to ship as ``model.pt``.
        deep_supervision: whether the network was built with deep-supervision heads (for rebuilding).
        validation: ``ValidationResult.to_dict()`` of the shipped weights, plus ``epoch``.
        training: epochs / iterations / seconds / stopped_reason / config / seed / device ...
        train_cases: training case ids (hashed with their provenance into the data snapshot).
        val_cases: validation case ids (promotion compares on these).
        history: per-epoch log (``history.json`` and ``curves.png``).
        checkpoint_files: ``{name: path}`` copied into ``checkpoints/``.
        postprocessing: what inference applies by default, decided on validation:
            ``{"keep_largest_component": [class values]}``.
    """
    family_dir, tmp = _partial_dir(ws, family)
    try:
        weights_sha = _write_weights(tmp, state_dict)
        version = _new_version(weights_sha)
        final = _final_dir(family_dir, version)
        _write_member_files(tmp, history, checkpoint_files, title=f"{family} {version}")
        metadata = {
            "family": family,
            "version": version,
            "kind": SINGLE,
            **_common_metadata(ws, plan, deep_supervision, train_cases, val_cases),
            "validation": validation,
            "postprocessing": postprocessing or {"keep_largest_component": []},
            "training": training,
            "files": {MODEL_FILE: weights_sha},
        }
        write_metadata(tmp, metadata)
        os.rename(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    log.info("saved %s bundle %s", family, final)
    return final


def _partial_dir(ws: Workspace, family: str) -> tuple[Path, Path]:
    """``(family dir, new hidden temporary bundle dir inside it)``."""
    family_dir = ws.model_family_dir(family)
    family_dir.mkdir(parents=True, exist_ok=True)
    tmp = family_dir / f".bundle.partial-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    return family_dir, tmp


def _final_dir(family_dir: Path, version: str) -> Path:
    final = family_dir / version
    if final.exists():
        raise BundleError(f"bundle {final} already exists; versions are never overwritten")
    return final


def _write_weights(folder: Path, state_dict: dict[str, torch.Tensor]) -> str:
    """Write ``folder/model.pt`` (CPU tensors); return its sha256."""
    folder.mkdir(parents=True, exist_ok=True)
    model_path = folder / MODEL_FILE
    torch.save({k: v.detach().cpu() for k, v in state_dict.items()}, model_path)
    return sha256_file(model_path)


def _write_member_files(
    folder: Path, history: list[dict[str, Any]], checkpoint_files: dict[str, Path] | None, title: str
) -> None:
    """``checkpoints/``, ``history.json`` and ``curves.png`` of one model."""
    (folder / CHECKPOINT_DIR).mkdir()
    for name, src in (checkpoint_files or {}).items():
        if Path(src).is_file():
            shutil.copy2(src, folder / CHECKPOINT_DIR / name)
    write_bundle_json(folder / HISTORY_FILE, history)
    plot_curves(history, folder / CURVES_FILE, title=title)


def _common_metadata(
    ws: Workspace, plan: Plan, deep_supervision: bool, train_cases: list[str], val_cases: list[str]
) -> dict[str, Any]:
    """Metadata fields shared by single and ensemble bundles (libraries, plan, network, input, data)."""
    return {
        "created_at": dt.datetime.now(dt.UTC).isoformat(),
        "libraries": library_versions(),
        "plan": {**plan.model_dump(mode="json"), "plan_hash": plan.plan_hash()},
        "plan_hash": plan.plan_hash(),
        "label_names": {str(k): v for k, v in sorted(plan.label_names.items())},
        **({"channel_names": plan.channel_names} if plan.channel_names else {}),
        "network": {
            "builder": "medseg.training.network.build_segmenter",
            "deep_supervision": deep_supervision,
        },
        "input_contract": input_contract(plan),
        "training_data": {
            "train_cases": sorted(train_cases),
            "val_cases": sorted(val_cases),
            **training_data_snapshot(ws, train_cases),
        },
    }


def save_ensemble_bundle(
    ws: Workspace,
    family: str,
    plan: Plan,
    folds: list[FoldModel],
    *,
    deep_supervision: bool,
    validation: dict[str, Any],
    training: dict[str, Any],
    cv_metrics: dict[str, Any],
    postprocessing: dict[str, Any] | None = None,
) -> Path:
    """Write a new immutable k-fold ensemble bundle (one ``fold_<i>/`` per member) and return its path.

    Args:
        ws: workspace.
        family: model family ("cnn" / "gan").
        plan: the plan every fold was trained with.
        folds: the members, in fold order.
        deep_supervision: whether the networks have deep-supervision heads (for rebuilding).
        validation: the pooled cross-validation scores (``dice_per_case`` over every out-of-fold case):
            promotion compares ensembles on these.
        training: the whole run (iterations and seconds summed over folds, per-fold records, warnings).
        cv_metrics: the content of ``cv_metrics.json`` (:func:`medseg.io.bundle.write_cv_metrics`).
        postprocessing: what inference applies by default, decided on the pooled cross-validation.
    """
    if len(folds) < 2:
        raise ValueError(f"an ensemble bundle needs at least 2 fold models, got {len(folds)}")
    family_dir, tmp = _partial_dir(ws, family)
    try:
        members = [f"fold_{i}" for i in range(len(folds))]
        shas = {f"{m}/{MODEL_FILE}": _write_weights(tmp / m, f.state_dict) for m, f in zip(members, folds, strict=True)}
        version = _new_version(hashlib.sha256("".join(shas.values()).encode()).hexdigest())
        final = _final_dir(family_dir, version)
        for i, (m, f) in enumerate(zip(members, folds, strict=True)):
            _write_member_files(tmp / m, f.history, f.checkpoint_files, title=f"{family} {version} fold {i}")
        shutil.copy2(tmp / members[0] / CURVES_FILE, tmp / CURVES_FILE)
        all_cases = sorted({c for f in folds for c in f.train_cases} | {c for f in folds for c in f.val_cases})
        metadata = {
            "family": family,
            "version": version,
            "kind": ENSEMBLE,
            "ensemble": {"folds": len(folds), "members": members, "combine": COMBINE_MEAN_SOFTMAX},
            **_common_metadata(ws, plan, deep_supervision, all_cases, all_cases),
            "folds": [
                {"fold": i, "member": m, "train_cases": sorted(f.train_cases), "val_cases": sorted(f.val_cases),
                 "mean_dice": f.validation.get("mean_dice"), "training": f.training}
                for i, (m, f) in enumerate(zip(members, folds, strict=True))
            ],
            "validation": validation,
            "postprocessing": postprocessing or {"keep_largest_component": []},
            "training": training,
            "files": shas,
        }
        write_cv_metrics(tmp, {"family": family, "version": version, **cv_metrics})
        write_metadata(tmp, metadata)
        os.rename(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    log.info("saved %s %d-fold ensemble bundle %s", family, len(folds), final)
    return final


def load_bundle(path: Path, device: torch.device | str = "cpu") -> ModelBundle:
    """Rebuild the segmenter(s) from the bundle's stored plan, load the weights and switch to eval mode.

    A single bundle loads ``model.pt``; an ensemble loads every ``fold_<i>/model.pt`` (``networks``).

    Raises:
        BundleError: missing files, checksum mismatch, plan hash mismatch or weights that do not fit.
    """
    path = Path(path)
    meta = read_metadata(path)
    plan_data = dict(meta["plan"])
    stored_hash = plan_data.pop("plan_hash", None)
    plan = Plan.model_validate(plan_data)
    if stored_hash is not None and stored_hash != plan.plan_hash():
        raise BundleError(f"{path / METADATA_FILE}: plan hash {stored_hash} != content {plan.plan_hash()} (edited?)")
    networks = [_load_member(path, meta, plan, member, device) for member in member_dirs(meta)]
    if not networks:
        raise BundleError(f"{path / METADATA_FILE}: an ensemble bundle without members (corrupt metadata)")
    return ModelBundle(
        path=path,
        family=str(meta["family"]),
        version=str(meta["version"]),
        plan=plan,
        network=networks[0],
        metadata=meta,
        networks=networks,
    )


def _load_member(path: Path, meta: dict[str, Any], plan: Plan, member: str, device: torch.device | str) -> nn.Module:
    """Rebuild one network of the bundle from ``<path>/<member>/model.pt`` (checksum checked), eval mode."""
    rel = f"{member}/{MODEL_FILE}" if member else MODEL_FILE
    model_path = path / rel
    if not model_path.is_file():
        raise BundleError(f"{model_path} not found: the bundle {path} is incomplete")
    expected = meta.get("files", {}).get(rel)
    if expected and sha256_file(model_path) != expected:
        raise BundleError(f"{model_path} is corrupt: sha256 differs from metadata.json (copy the bundle again)")
    network = build_segmenter(plan, bool(meta.get("network", {}).get("deep_supervision", False)))
    try:
        state = torch.load(model_path, map_location="cpu", weights_only=True)
        network.load_state_dict(state)
    except Exception as exc:
        raise BundleError(f"cannot load weights {model_path}: {type(exc).__name__}: {exc}") from exc
    network.eval()
    network.to(device)
    return network


def list_bundles(ws: Workspace, family: str) -> list[Path]:
    """Complete bundles of ``family``, oldest first (directories with a metadata.json)."""
    family_dir = ws.model_family_dir(family)
    if not family_dir.is_dir():
        return []
    return sorted(
        p for p in family_dir.iterdir() if p.is_dir() and not p.name.startswith(".") and (p / METADATA_FILE).is_file()
    )


def champion(ws: Workspace, family: str) -> Path | None:
    """Champion bundle path of ``family`` or None (see :func:`medseg.training.promotion.champion`)."""
    from medseg.training.promotion import champion as _champion

    return _champion(ws, family)


def promote(ws: Workspace, family: str, bundle_path: Path, margin: float = 0.0, allow_capped: bool = False) -> bool:
    """Promote ``bundle_path`` if it beats the champion (see :func:`medseg.training.promotion.promote`)."""
    from medseg.training.promotion import promote as _promote

    return _promote(ws, family, bundle_path, margin, allow_capped=allow_capped)
