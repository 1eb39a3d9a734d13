"""Stage 4: batch inference of one model bundle over a selection of cases."""

from __future__ import annotations

import time
from pathlib import Path

from medseg.config import MedsegConfig, ModelFamily
from medseg.inference.predict import run_inference
from medseg.inference.selection import CaseSelection, select_cases
from medseg.stages.outcome import ProgressFn, StageOutcome, event_progress
from medseg.training.bundle import champion
from medseg.workspace import Workspace


class NoModelError(FileNotFoundError):
    """No bundle was given and the family has no champion yet."""


def run_infer_stage(
    cfg: MedsegConfig,
    family: ModelFamily,
    bundle_path: Path | None = None,
    case_ids: list[str] | None = None,
    progress: ProgressFn | None = None,
    cases: CaseSelection = "test",
) -> StageOutcome:
    """Predict a selection of cases with ``bundle_path`` (default: the champion).

    Args:
        cfg: configuration (``infer`` section, ``train.device``).
        family: model family.
        bundle_path: bundle to use; None = the family's champion.
        case_ids: explicit case ids (overrides ``cases``; kept for existing callers).
        progress: ``progress(label, done, total)``.
        cases: ``"test"`` (held-out split, default), ``"pending"`` (every ingested case without a
            prediction from this bundle version: nightly runs) or a list of case ids.

    Cases already predicted by the same model version are skipped inside :func:`run_inference`.
    """
    started = time.time()
    stage = f"infer-{family.value}"
    ws = Workspace.at(cfg.workspace).ensure()
    bundle = bundle_path or champion(ws, family.value)
    if bundle is None:
        raise NoModelError(f"no {family.value} model in {ws.model_family_dir(family.value)}: run `medseg train` first")
    selection = "explicit" if case_ids is not None else cases if isinstance(cases, str) else "list"
    if case_ids is None:
        case_ids = select_cases(ws, cases, family.value, Path(bundle).name)
    summary = run_inference(ws, cfg, family, case_ids, bundle_path=Path(bundle),
                            progress=event_progress(progress, family.value))
    if summary.failed and not summary.predicted and not summary.skipped:
        raise RuntimeError(f"inference failed for every case: {summary.failed}")
    stats = {
        "version": summary.version,
        "predicted": len(summary.predicted),
        "skipped": len(summary.skipped),
        "failed": len(summary.failed),
        "errors": summary.failed,
        "seconds_per_case": round(sum(summary.case_seconds.values()) / max(1, len(summary.case_seconds)), 2),
        "dicom_seg": len(summary.dicom_seg),
        "selection": selection,
        "cases": len(case_ids),
    }
    return StageOutcome(stage=stage, seconds=time.time() - started, stats=stats, outputs=[str(summary.output_dir)])
