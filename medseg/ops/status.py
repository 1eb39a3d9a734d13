"""What ``medseg status`` shows: last stage runs, the queue of pending work, the champion models."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from medseg.io.bundle import METADATA_FILE, BundleError, read_metadata
from medseg.ops.bulk import latest_manifest, totals
from medseg.ops.nightly import champion_version, ingested_cases, pending_cases, unpreprocessed_cases
from medseg.stage_record import StageRecord
from medseg.training.budget import capped_warning
from medseg.workspace import Workspace


class StageRun(BaseModel):
    stage: str
    state: str = "completed"
    started_at: float
    finished_at: float
    seconds: float
    stats: dict[str, Any] = Field(default_factory=dict)


class PendingWork(BaseModel):
    """Work not done yet (``None`` = unknown: e.g. no source scan was requested)."""

    files_unindexed: int | None = Field(None, description="files under the sources not in the catalog")
    bulk_batches_left: int | None = Field(None, description="batches of the latest bulk manifest without a record")
    cases_ingested: int = 0
    cases_not_preprocessed: int = 0
    cases_without_prediction: dict[str, int] = Field(
        default_factory=dict, description="{family: ingested cases the champion has not predicted}"
    )


class ChampionInfo(BaseModel):
    family: str
    version: str | None
    val_mean_dice: float | None = None
    promoted_at: str = ""
    reason: str = ""
    error: str = ""
    warnings: list[str] = Field(default_factory=list, description="e.g. the bundle was stopped by the time cap")


def last_stage_runs(ws: Workspace) -> list[StageRun]:
    """The record of every stage (``WS/stages/*.json``), most recent first."""
    runs = []
    for path in ws.stages_dir.glob("*.json"):
        try:
            rec = StageRecord.model_validate_json(path.read_text())
        except ValueError:
            continue
        runs.append(StageRun(stage=rec.stage, started_at=rec.started_at, finished_at=rec.finished_at,
                             seconds=round(rec.seconds, 2), stats=rec.stats))
    return sorted(runs, key=lambda r: r.finished_at, reverse=True)


def count_unindexed(ws: Workspace, sources: list[Path]) -> int:
    """Files under ``sources`` whose (path, size, mtime) the catalog lacks (scans the sources: slow on big archives)."""
    from medseg.ingest.file_index import scan_sources
    from medseg.ops.bulk import unindexed

    n = 0
    chunk: list[tuple[str, int, int]] = []
    for item in scan_sources(sources):
        chunk.append(item)
        if len(chunk) >= 5000:
            n += len(unindexed(ws.catalog_path, chunk))
            chunk = []
    return n + len(unindexed(ws.catalog_path, chunk))


def pending_work(ws: Workspace, families: list[str], sources: list[Path] | None = None) -> PendingWork:
    """The queue: unindexed files (only when ``sources`` are given), unpreprocessed cases, unpredicted cases."""
    work = PendingWork(cases_ingested=len(ingested_cases(ws)), cases_not_preprocessed=len(unpreprocessed_cases(ws)))
    if sources:
        work.files_unindexed = count_unindexed(ws, sources)
    manifest = latest_manifest(ws)
    if manifest is not None:
        work.bulk_batches_left = manifest.n_batches - totals(ws, manifest).batches_done
    for family in families:
        try:
            work.cases_without_prediction[family] = len(pending_cases(ws, family))
        except Exception:  # noqa: BLE001 - unreadable pointer: shown in the champions table
            continue
    return work


def champions(ws: Workspace, families: list[str]) -> list[ChampionInfo]:
    """Champion of each family (and of any other family folder in the workspace) with its metrics."""
    names = sorted(set(families) | {p.name for p in ws.models_dir.glob("*") if p.is_dir()})
    out = []
    for family in names:
        try:
            version = champion_version(ws, family)
        except Exception as exc:  # noqa: BLE001
            out.append(ChampionInfo(family=family, version=None, error=str(exc)))
            continue
        if version is None:
            out.append(ChampionInfo(family=family, version=None))
            continue
        data = json.loads(ws.champion_path(family).read_text())
        bundle = ws.model_family_dir(family) / version
        warning, error = None, f"bundle {bundle} missing"
        if (bundle / METADATA_FILE).is_file():
            try:
                warning, error = capped_warning(read_metadata(bundle)), ""
            except BundleError as exc:
                error = str(exc)
        dice = data.get("val_mean_dice")
        out.append(ChampionInfo(family=family, version=version,
                                val_mean_dice=float(dice) if isinstance(dice, int | float) else None,
                                promoted_at=str(data.get("promoted_at", ""))[:19].replace("T", " "),
                                reason=str(data.get("reason", "")), error=error,
                                warnings=[warning] if warning else []))
    return out


class NextStep(BaseModel):
    """What to run next on a workspace: a ``medseg`` command (its ``--workspace`` left out) and why."""

    command: str
    reason: str


def next_step(ws: Workspace, work: PendingWork, champs: list[ChampionInfo]) -> NextStep | None:
    """The first stage with work left, in pipeline order (None: every stage is up to date)."""
    if not ws.catalog_path.is_file():
        return NextStep(command="medseg ingest SOURCE...",
                        reason="nothing ingested yet; `medseg demo` runs every stage on a synthetic archive")
    if work.files_unindexed:
        return NextStep(command="medseg ingest SOURCE...", reason=f"{work.files_unindexed} files not indexed yet")
    if work.cases_ingested == 0:
        return NextStep(command="medseg catalog --quarantine", reason="no case was ingested: see why")
    if work.cases_not_preprocessed or not ws.plan_path.is_file():
        return NextStep(command="medseg preprocess", reason=f"{work.cases_not_preprocessed} cases not preprocessed")
    untrained = [c.family for c in champs if c.version is None or c.error]
    if untrained:
        return NextStep(command="medseg train" + "".join(f" --model {f}" for f in untrained),
                        reason=f"no usable champion model: {', '.join(untrained)}")
    unpredicted = [c.family for c in champs
                   if c.version and not any(ws.prediction_dir(c.family, c.version).glob("*.zarr"))]
    if unpredicted:
        return NextStep(command="medseg infer", reason=f"no predictions of the champion yet: {', '.join(unpredicted)}")
    if not any(ws.reports_dir.glob("*/report.md")):
        return NextStep(command="medseg report", reason="no report yet")
    pending = sum(work.cases_without_prediction.values())
    if pending:
        return NextStep(command="medseg infer --select pending",
                        reason=f"{pending} predictions of ingested cases missing (all families)")
    return None
