"""Stage 4: batch inference of one model bundle over a selection of cases (in this process or over Dask workers)."""

from __future__ import annotations

import time
from pathlib import Path

from medseg.config import MedsegConfig, ModelFamily
from medseg.inference.cluster_infer import bundle_version, pending_cases, run_inference_on_cluster
from medseg.inference.layout import choose_layout, cluster_gpu_workers, infer_client, machine_cores
from medseg.inference.predict import run_inference
from medseg.inference.selection import CaseSelection, select_cases
from medseg.runtime.gpu_workers import node_gpu_ids
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

    Cases already predicted by the same model version are skipped. The others are predicted in this
    process or fan out over Dask workers, one task per case (``infer.workers``, ``dask``; the rule is
    :func:`medseg.inference.layout.choose_layout`); ``stats["layout"]`` says which, and
    ``stats["cases_per_worker"]`` how many cases each worker predicted.
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
    version = bundle_version(Path(bundle))
    todo = pending_cases(ws.prediction_dir(family.value, version), case_ids, family.value, version)
    gpus = node_gpu_ids()
    layout = choose_layout(cfg.infer.workers, cfg.dask, cfg.train.device, gpus, len(todo),
                           cluster_gpu_workers(cfg.dask) if cfg.dask.address and gpus else None, machine_cores())
    events = event_progress(progress, family.value)
    with infer_client(cfg, layout) as client:
        if client is None:
            summary = run_inference(ws, cfg, family, case_ids, bundle_path=Path(bundle), progress=events)
        else:
            summary = run_inference_on_cluster(ws, cfg, family, case_ids, Path(bundle), client, progress=events,
                                               layout=layout.describe())
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
        "layout": summary.layout,
        "layout_reason": layout.reason,
        "cases_per_worker": cases_per_worker(summary.workers),
        "worker_peak_rss_mib": {w: round(v, 1) for w, v in sorted(summary.worker_peak_rss_mib.items())},
    }
    return StageOutcome(stage=stage, seconds=time.time() - started, stats=stats, outputs=[str(summary.output_dir)])


def cases_per_worker(workers: dict[str, str]) -> dict[str, int]:
    """Cases each Dask worker predicted (``{}`` in-process), by worker name."""
    counts: dict[str, int] = {}
    for worker in workers.values():
        counts[worker] = counts.get(worker, 0) + 1
    return dict(sorted(counts.items()))
