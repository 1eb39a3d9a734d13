"""Model bundles (the model registry) and champion promotion.

A bundle is an immutable directory ``<workspace>/models/<family>/<version>/`` with::

    model.pt          segmenter state_dict (best validation epoch)
    metadata.json     see :func:`save_bundle` (on-disk format: :mod:`medseg.io.bundle`)
    history.json      per-epoch training log
    curves.png        train loss and validation Dice per epoch
    checkpoints/      best.pt, last.pt (full training state, for inspection / fine-tuning)

``version`` = UTC timestamp + 8 hex digits of the weights hash; a version directory is never
overwritten. ``<workspace>/models/<family>/champion.json`` points at the promoted bundle.
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import monai
import numpy as np
import torch
from torch import nn

import medseg
from medseg.io.bundle import METADATA_FILE, BundleError, read_metadata, write_bundle_json, write_metadata
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


@dataclass
class ModelBundle:
    """A loaded bundle: the segmenter (eval mode, CPU unless moved) and everything needed to use it."""

    path: Path
    family: str
    version: str
    plan: Plan
    network: nn.Module
    metadata: dict[str, Any]

    @property
    def label_names(self) -> dict[int, str]:
        return dict(self.plan.label_names)

    def to(self, device: torch.device | str) -> ModelBundle:
        self.network.to(device)
        return self


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
    family_dir = ws.model_family_dir(family)
    family_dir.mkdir(parents=True, exist_ok=True)
    tmp = family_dir / f".bundle.partial-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        model_path = tmp / MODEL_FILE
        torch.save({k: v.detach().cpu() for k, v in state_dict.items()}, model_path)
        weights_sha = sha256_file(model_path)
        version = _new_version(weights_sha)
        final = family_dir / version
        if final.exists():
            raise BundleError(f"bundle {final} already exists; versions are never overwritten")
        (tmp / CHECKPOINT_DIR).mkdir()
        for name, src in (checkpoint_files or {}).items():
            if Path(src).is_file():
                shutil.copy2(src, tmp / CHECKPOINT_DIR / name)
        write_bundle_json(tmp / HISTORY_FILE, history)
        plot_curves(history, tmp / CURVES_FILE, title=f"{family} {version}")
        metadata = {
            "family": family,
            "version": version,
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


def load_bundle(path: Path, device: torch.device | str = "cpu") -> ModelBundle:
    """Rebuild the segmenter from the bundle's stored plan, load ``model.pt`` and switch to eval mode.

    Raises:
        BundleError: missing files, checksum mismatch, plan hash mismatch or weights that do not fit.
    """
    path = Path(path)
    meta = read_metadata(path)
    model_path = path / MODEL_FILE
    if not model_path.is_file():
        raise BundleError(f"{model_path} not found: the bundle {path} is incomplete")
    expected = meta.get("files", {}).get(MODEL_FILE)
    if expected and sha256_file(model_path) != expected:
        raise BundleError(f"{model_path} is corrupt: sha256 differs from metadata.json (copy the bundle again)")
    plan_data = dict(meta["plan"])
    stored_hash = plan_data.pop("plan_hash", None)
    plan = Plan.model_validate(plan_data)
    if stored_hash is not None and stored_hash != plan.plan_hash():
        raise BundleError(f"{path / METADATA_FILE}: plan hash {stored_hash} != content {plan.plan_hash()} (edited?)")
    network = build_segmenter(plan, bool(meta.get("network", {}).get("deep_supervision", False)))
    try:
        state = torch.load(model_path, map_location="cpu", weights_only=True)
        network.load_state_dict(state)
    except Exception as exc:
        raise BundleError(f"cannot load weights {model_path}: {type(exc).__name__}: {exc}") from exc
    network.eval()
    network.to(device)
    return ModelBundle(
        path=path,
        family=str(meta["family"]),
        version=str(meta["version"]),
        plan=plan,
        network=network,
        metadata=meta,
    )


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
