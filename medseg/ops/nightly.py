"""Decisions of the nightly retrain flow: what counts as new data, the nightly settings, champion checks.

The flow itself (``flows/nightly.py``) only wires these to the stage tasks.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from medseg.config import MedsegConfig, ModelFamily, NightlyTraining
from medseg.io.volume_store import is_complete
from medseg.stages.outcome import StageOutcome
from medseg.workspace import Workspace

NOTHING_NEW = "nothing new"

#: ingest stats that mean "the catalog or the volume stores changed"
_CHANGE_STATS = ("files_indexed", "files_removed", "series_ingested", "series_resumed", "volumes_removed")


def nightly_config(cfg: MedsegConfig) -> MedsegConfig:
    """``cfg`` with the nightly settings: frozen plan, warm start (``ops.nightly_training``), time budget.

    The plan is frozen so that new cases are preprocessed like the old ones and the champion stays
    comparable; ``train.max_minutes`` becomes ``ops.nightly_train_minutes`` when that is set.
    """
    train: dict[str, object] = {"warm_start": cfg.ops.nightly_training == NightlyTraining.WARM}
    if cfg.ops.nightly_train_minutes is not None:
        train["max_minutes"] = cfg.ops.nightly_train_minutes
    # copies, not a JSON round trip: the dump shows the de-identification key as '**********'
    return cfg.model_copy(update={"preprocess": cfg.preprocess.model_copy(update={"freeze_plan": True}),
                                  "train": cfg.train.model_copy(update=train)})


def changes_of(ingest: StageOutcome) -> dict[str, int]:
    """The non-zero change counts of an ingest outcome (empty = nothing new)."""
    if ingest.skipped:
        return {}
    return {k: int(ingest.stats.get(k) or 0) for k in _CHANGE_STATS if int(ingest.stats.get(k) or 0) > 0}


def drift_hold(drift: StageOutcome, max_share: float | None) -> str | None:
    """Why the nightly run must not promote (``ops.drift_max_share``): more than ``max_share`` of the new
    cases are out of distribution. None: promotion may go ahead (no limit, no check, or within it)."""
    if max_share is None or drift.skipped:
        return None
    share = float(drift.stats.get("share") or 0.0)
    if share <= max_share:
        return None
    return (f"drift: {drift.stats.get('out_of_distribution')} of {drift.stats.get('cases')} new case(s) out of "
            f"distribution ({share:.0%} > ops.drift_max_share {max_share:.0%}), see drift.md of this run")


def is_nothing_new(ingest: StageOutcome) -> bool:
    """True when the incremental ingest indexed no file and (re)wrote or removed no case."""
    return not changes_of(ingest)


def champion_version(ws: Workspace, family: str) -> str | None:
    """The version named by ``models/<family>/champion.json`` (None without a pointer)."""
    pointer = ws.champion_path(family)
    if not pointer.is_file():
        return None
    try:
        return str(json.loads(pointer.read_text())["version"])
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        from medseg.io.bundle import BundleError

        raise BundleError(
            f"champion pointer {pointer} is unreadable ({exc}); fix it or delete it to train from scratch"
        ) from exc


def verify_champions(ws: Workspace, families: list[ModelFamily]) -> dict[str, str | None]:
    """Load every family's champion bundle (checksums, plan hash, weights) before any work starts.

    Returns:
        ``{family: champion version or None}``.

    Raises:
        BundleError: a champion bundle is missing or corrupt. The message names the bundle and the
            fix; nothing was changed (the champion pointer stays as it is).
    """
    from medseg.io.bundle import BundleError
    from medseg.training.bundle import load_bundle

    found: dict[str, str | None] = {}
    for family in families:
        version = champion_version(ws, family.value)
        found[family.value] = version
        if version is None:
            continue
        path = ws.model_family_dir(family.value) / version
        try:
            load_bundle(path)
        except BundleError as exc:
            raise BundleError(
                f"champion {family.value} bundle {path} is corrupt: {exc}. The nightly run stopped before "
                f"changing anything; restore the bundle, or point {ws.champion_path(family.value)} at a good "
                "version (see `medseg status`)"
            ) from exc
    return found


def ingested_cases(ws: Workspace) -> list[str]:
    """Case ids with a complete native volume store."""
    return sorted(p.name.removesuffix(".zarr") for p in ws.volumes_dir.glob("*.zarr") if is_complete(p))


def pending_cases(ws: Workspace, family: str, version: str | None = None) -> list[str]:
    """Ingested cases (catalog) without a finished prediction from ``version`` (default: the champion).

    Same rule as ``cases="pending"`` of the infer stage (:func:`medseg.inference.selection.pending_case_ids`).
    """
    from medseg.inference.selection import ingested_case_ids, pending_case_ids

    version = version or champion_version(ws, family)
    if not ws.catalog_path.is_file():
        return []
    if version is None:
        return ingested_case_ids(ws)
    return pending_case_ids(ws, family, version)


def unpreprocessed_cases(ws: Workspace) -> list[str]:
    """Ingested cases without a completed preprocessed store (labeled or not)."""
    return [c for c in ingested_cases(ws) if not is_complete(ws.preprocessed_case_path(c))]


def nothing_new_result(run_id: str, ingest: StageOutcome, seconds: float) -> dict[str, Any]:
    """The flow result of a night without new data."""
    return {
        "run_id": run_id,
        "status": NOTHING_NEW,
        "message": f"{NOTHING_NEW}: no new or changed files under the watched sources ({ingest.reason or 'no change'})",
        "stages": [ingest.brief()],
        "seconds": round(seconds, 3),
    }


def report_dir(ws: Workspace, run_id: str) -> Path:
    return ws.reports_dir / run_id
