"""``medseg infer`` over Dask workers: one task per case, the model loaded once per worker process.

:func:`run_inference_on_cluster` is :func:`medseg.inference.predict.run_inference` with the cases
spread over a Dask client's workers (:func:`infer_case_task` on each); the per-case function, the
outputs, their order and the per-case idempotence are the same (:func:`medseg.inference.predict.predict_case`),
so are the summary and the progress events. The summary also records which worker predicted each
case and each worker's peak memory. Which runs take this path: :mod:`medseg.inference.layout`.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from distributed import Client

from medseg.config import MedsegConfig, ModelFamily
from medseg.inference.case_tasks import CaseRun, fan_out_cases, on_worker, peak_rss_mib
from medseg.inference.model_cache import BundleRef, cached_bundle
from medseg.inference.predict import InferSummary, Progress, already_predicted, predict_case
from medseg.io.volume_store import clean_partial_stores
from medseg.preprocess.fanout import Outcome
from medseg.workspace import Workspace

log = logging.getLogger(__name__)


def bundle_version(bundle_path: Path) -> str:
    """The version of the bundle at ``bundle_path`` (its metadata; the network is not loaded)."""
    return BundleRef.read(bundle_path).version


def pending_cases(out_dir: Path, case_ids: list[str], family: str, version: str) -> list[str]:
    """The cases of ``case_ids`` without a finished prediction of ``family``/``version`` in ``out_dir``."""
    return [c for c in case_ids if not already_predicted(out_dir, c, family, version)]


def infer_case_task(case_id: str, *, workspace: str, cfg: MedsegConfig, bundle_path: str, out_dir: str,
                    holds_gpu: bool) -> CaseRun:
    """Predict one case on this Dask worker (the worker side of :func:`run_inference_on_cluster`).

    A case finished meanwhile (by an earlier try whose worker died before it reported) is skipped.
    """
    t0 = time.perf_counter()
    place = on_worker(cfg.train.device, holds_gpu)
    bundle = cached_bundle(bundle_path, place.device)
    out = Path(out_dir)
    seg_file = None
    if already_predicted(out, case_id, bundle.family, bundle.version):
        status = "skipped"
    else:
        seg_file = predict_case(Workspace.at(workspace), cfg, bundle, case_id, out, place.device)
        status = "predicted"
    return CaseRun(case_id, status, time.perf_counter() - t0, place.worker, str(place.device), peak_rss_mib(),
                   seg_file=None if seg_file is None else str(seg_file))


def run_inference_on_cluster(
    ws: Workspace,
    cfg: MedsegConfig,
    family: ModelFamily | str,
    case_ids: list[str],
    bundle_path: Path,
    client: Client,
    progress: Progress | None = None,
    layout: str = "cluster",
) -> InferSummary:
    """Predict ``case_ids`` with the bundle at ``bundle_path``, one Dask task per case on ``client``.

    Args:
        ws: workspace (on a file system every worker mounts at the same path).
        cfg: as for :func:`~medseg.inference.predict.run_inference`; ``train.device`` is resolved on
            each worker (:mod:`medseg.inference.placement`).
        family: "cnn" or "gan".
        case_ids: cases to predict; those already predicted by this bundle version are skipped here.
        bundle_path: the bundle folder (read by every worker).
        client: the Dask client.
        progress: called with ``{"event": "case", "case_id", "status", "seconds", "done", "total"}``
            per case (skipped ones first, then in completion order).
        layout: recorded in the summary.

    Returns:
        InferSummary, with ``workers`` (case -> worker) and ``worker_peak_rss_mib``; a case that
        fails (after one retry) is reported in ``failed``, the others still run.
    """
    family = str(ModelFamily(str(family)))
    start = time.perf_counter()
    version = bundle_version(bundle_path)
    out_dir = ws.prediction_dir(family, version)
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = InferSummary(family=family, version=version, bundle_path=Path(bundle_path), output_dir=out_dir,
                           layout=layout)
    emit = progress or (lambda _e: None)
    case_ids = list(dict.fromkeys(case_ids))  # one task per case
    total = len(case_ids)
    todo = pending_cases(out_dir, case_ids, family, version)
    for n, case_id in enumerate(sorted(set(case_ids) - set(todo), key=case_ids.index), start=1):
        summary.skipped.append(case_id)
        emit({"event": "case", "case_id": case_id, "status": "skipped", "seconds": 0.0, "done": n, "total": total})
    done_before = len(summary.skipped)

    def _report(o: Outcome[str, CaseRun], done: int, _n: int) -> None:
        run = o.value
        status = "failed" if run is None else run.status
        if run is None:
            log.error("inference failed for case %s: %s", o.item, o.error)
            summary.failed[o.item] = str(o.error)
        else:
            (summary.predicted if run.status == "predicted" else summary.skipped).append(run.case_id)
            if run.status == "predicted":
                summary.case_seconds[run.case_id] = run.seconds
                summary.workers[run.case_id] = run.worker
            if run.seg_file is not None:
                summary.dicom_seg[run.case_id] = Path(run.seg_file)
            summary.worker_peak_rss_mib[run.worker] = max(run.peak_rss_mib,
                                                          summary.worker_peak_rss_mib.get(run.worker, 0.0))
        emit({"event": "case", "case_id": o.item, "status": status, "seconds": 0.0 if run is None else run.seconds,
              "done": done_before + done, "total": total})

    log.info("predicting %d of %d cases on %s (%d already done)", len(todo), total, layout, done_before)
    fan_out_cases(infer_case_task, todo, client, cfg.train.device, on_outcome=_report, workspace=str(ws.root),
                  cfg=cfg, bundle_path=str(Path(bundle_path).resolve()), out_dir=str(out_dir))
    clean_partial_stores(out_dir)  # every task has ended: stores left half-written are from killed workers
    summary.seconds = time.perf_counter() - start
    return summary
