"""Champion / challenger promotion of model bundles.

``<workspace>/models/<family>/champion.json`` names the champion bundle. A challenger replaces it
when its validation mean Dice is at least the champion's plus ``margin``, **computed on the same
validation cases** (the cases both bundles were validated on, from their per-case Dice in
metadata.json). When the two share no validation case but were trained with the same plan, the
champion is re-validated on the challenger's validation cases; otherwise the champion is kept.

Like is compared with like (:func:`compared_scores`): a single model with a single model on its
validation Dice (``validation.dice_per_case`` of the best epoch, on the val split); a k-fold ensemble
with an ensemble on its cross-validation Dice (``validation.dice_per_case`` of the ensemble bundle:
each non-test case scored by the fold model that did not train on it, pooled over the folds, see
:mod:`medseg.training.cross_validation`), on the out-of-fold cases both share, whatever their k. An
ensemble champion is never re-validated (its members trained on the challenger's cases). A
challenger of the other kind is never scored against the champion: the two numbers measure different
things (a held-out split vs cross-validation), so the kind the config asks for (``train.folds``)
replaces the champion, and the pointer says so.

A challenger that the time cap (``train.max_minutes``) stopped before its iteration budget never
replaces a champion that completed its own budget, whatever its score, unless
``train.promote_capped`` allows it: a nightly run on a busy machine must not silently ship a model
that trained a fraction of its schedule.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medseg.io.bundle import ENSEMBLE, BundleError, bundle_kind, ensemble_folds, read_metadata, write_bundle_json
from medseg.training.budget import capped_warning, time_capped
from medseg.training.bundle import load_bundle
from medseg.workspace import Workspace

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PromotionDecision:
    """Outcome of comparing a challenger with the current champion (scores are mean Dice on ``cases``)."""

    promote: bool
    reason: str
    challenger_score: float | None
    champion_score: float | None
    cases: tuple[str, ...]


def champion(ws: Workspace, family: str) -> Path | None:
    """Path of the champion bundle of ``family``, or None (no pointer, or it points at a missing bundle)."""
    pointer = ws.champion_path(family)
    if not pointer.is_file():
        return None
    try:
        version = json.loads(pointer.read_text())["version"]
    except (json.JSONDecodeError, KeyError, TypeError):
        log.warning("%s is unreadable; treating %s as having no champion", pointer, family)
        return None
    path = ws.model_family_dir(family) / str(version)
    try:
        read_metadata(path)
    except BundleError as exc:
        log.warning("champion pointer %s names a broken bundle: %s", pointer, exc)
        return None
    return path


def _score(per_case: dict[str, dict[str, float | None]], cases: list[str], classes: list[str]) -> float:
    """Mean over classes of the NaN-aware mean Dice over ``cases`` (same rule as validation)."""
    class_means = []
    for name in classes:
        values = [per_case[c].get(name) for c in cases if c in per_case]
        finite = [float(v) for v in values if v is not None and not math.isnan(float(v))]
        if finite:
            class_means.append(float(np.mean(finite)))
    return float(np.mean(class_means)) if class_means else float("nan")


def describe_kind(meta: dict[str, Any]) -> str:
    """``"single model"`` or ``"<k>-fold ensemble"``."""
    return f"{ensemble_folds(meta)}-fold ensemble" if bundle_kind(meta) == ENSEMBLE else "single model"


def compared_scores(meta: dict[str, Any]) -> str:
    """What promotion compares for a bundle of this kind (recorded in ``champion.json``)."""
    if bundle_kind(meta) == ENSEMBLE:
        return "cross-validation mean Dice (out-of-fold cases, pooled over the folds) on the shared cases"
    return "validation mean Dice (best epoch, val split) on the shared cases"


def _per_case(meta: dict[str, Any]) -> dict[str, dict[str, float | None]]:
    return dict((meta.get("validation") or {}).get("dice_per_case") or {})


def decide(
    ws: Workspace,
    challenger_meta: dict[str, Any],
    champion_meta: dict[str, Any] | None,
    margin: float,
    champion_path: Path | None = None,
    allow_capped: bool = False,
) -> PromotionDecision:
    """Compare challenger and champion metadata (see module docstring); pure apart from re-validation."""
    chall_cases = _per_case(challenger_meta)
    if champion_meta is None:
        return PromotionDecision(True, "no champion yet", None, None, tuple(sorted(chall_cases)))
    if time_capped(challenger_meta) and not time_capped(champion_meta) and not allow_capped:
        return PromotionDecision(
            False,
            f"challenger {capped_warning(challenger_meta)}; the champion completed its budget: champion kept "
            "(train.promote_capped=true allows it)",
            None, None, (),
        )
    if bundle_kind(challenger_meta) != bundle_kind(champion_meta):
        return PromotionDecision(
            True,
            f"challenger is a {describe_kind(challenger_meta)}, the champion a {describe_kind(champion_meta)}: "
            "their scores are not comparable (cross-validation vs validation Dice); the configured kind "
            "(train.folds) replaces the champion",
            None, None, (),
        )
    champ_cases = _per_case(champion_meta)
    classes = sorted(
        set(challenger_meta.get("label_names", {}).values()) & set(champion_meta.get("label_names", {}).values())
    )
    if not classes:
        return PromotionDecision(True, "champion predicts other classes", None, None, tuple(sorted(chall_cases)))
    common = sorted(set(chall_cases) & set(champ_cases))
    if not common:
        if bundle_kind(champion_meta) == ENSEMBLE:
            return PromotionDecision(
                False, "no shared out-of-fold cases between the ensembles: champion kept", None, None, ()
            )
        if champion_path is None or challenger_meta.get("plan_hash") != champion_meta.get("plan_hash"):
            return PromotionDecision(
                False, "no shared validation cases and different plans: champion kept", None, None, ()
            )
        champ_cases = _revalidate(ws, champion_path, sorted(chall_cases))
        common = sorted(set(chall_cases) & set(champ_cases))
        if not common:
            return PromotionDecision(False, "champion could not be re-validated: champion kept", None, None, ())
    s_chall = _score(chall_cases, common, classes)
    s_champ = _score(champ_cases, common, classes)
    if math.isnan(s_chall):
        return PromotionDecision(False, "challenger has no valid Dice", None, _finite(s_champ), tuple(common))
    if math.isnan(s_champ) or s_chall >= s_champ + margin:
        return PromotionDecision(
            True,
            f"challenger {s_chall:.4f} >= champion {s_champ:.4f} + margin {margin}",
            s_chall,
            _finite(s_champ),
            tuple(common),
        )
    return PromotionDecision(
        False,
        f"challenger {s_chall:.4f} < champion {s_champ:.4f} + margin {margin}",
        s_chall,
        s_champ,
        tuple(common),
    )


def _finite(v: float) -> float | None:
    return None if math.isnan(v) else v


def _revalidate(ws: Workspace, bundle_path: Path, cases: list[str]) -> dict[str, dict[str, float | None]]:
    """Dice per case of the bundle at ``bundle_path`` on preprocessed ``cases`` (those that exist)."""
    from medseg.training.validate import validate  # local: pulls in the inference stack

    paths = {c: ws.preprocessed_case_path(c) for c in cases if ws.preprocessed_case_path(c).exists()}
    if not paths:
        return {}
    bundle = load_bundle(bundle_path)
    result = validate(bundle.network, paths, bundle.plan, torch.device("cpu"))
    return {c: {k: (None if math.isnan(v) else v) for k, v in d.items()} for c, d in result.per_case.items()}


def promote(ws: Workspace, family: str, bundle_path: Path, margin: float = 0.0, allow_capped: bool = False) -> bool:
    """Make ``bundle_path`` the champion of ``family`` if it beats the current one (see :func:`decide`).

    ``allow_capped`` (``train.promote_capped``) lets a run stopped by the time cap replace a champion
    that completed its iteration budget.

    Returns:
        True when ``champion.json`` now points at ``bundle_path``.
    """
    bundle_path = Path(bundle_path)
    challenger_meta = read_metadata(bundle_path)
    current = champion(ws, family)
    if current is not None and current.resolve() == bundle_path.resolve():
        return True
    champion_meta = read_metadata(current) if current is not None else None
    decision = decide(ws, challenger_meta, champion_meta, margin, champion_path=current, allow_capped=allow_capped)
    log.info("promotion of %s %s: %s", family, bundle_path.name, decision.reason)
    if not decision.promote:
        return False
    pointer = ws.champion_path(family)
    previous: list[dict[str, Any]] = []
    if pointer.is_file():
        try:
            old = json.loads(pointer.read_text())
            previous = list(old.get("previous", [])) + [{k: old.get(k) for k in ("version", "promoted_at")}]
        except (json.JSONDecodeError, AttributeError):
            previous = []
    pointer.parent.mkdir(parents=True, exist_ok=True)
    write_bundle_json(
        pointer,
        {
            "family": family,
            "version": bundle_path.name,
            "promoted_at": dt.datetime.now(dt.UTC).isoformat(),
            "reason": decision.reason,
            "val_mean_dice": (challenger_meta.get("validation") or {}).get("mean_dice"),
            "kind": bundle_kind(challenger_meta),
            "compared": compared_scores(challenger_meta),
            "compared_on_cases": list(decision.cases),
            "challenger_score": decision.challenger_score,
            "champion_score": decision.champion_score,
            "previous": previous,
        },
    )
    return True
