"""Stage: prediction QA of one run's predictions, with or without ground truth.

Writes, under ``reports/<run_id>/``: ``qa.json`` (:class:`~medseg.qa.record.QAReport`: every case
ranked, flagged first, with its score and reasons), overlay PNGs of the top flagged cases
(``qa/<rank>_<case_id>.png``: image + each model's prediction) and ``qa.md`` / ``qa.html`` (the
section on its own page). The metrics report of the same run shows the same section first
(:func:`qa_for_report`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Collection, Mapping
from pathlib import Path

import numpy as np

from medseg.config import MedsegConfig
from medseg.geometry import Geometry
from medseg.io.case_arrays import PRED_LABEL, open_image, open_label
from medseg.io.volume_store import read_meta
from medseg.qa.assess import assess_predictions, workspace_training_volumes
from medseg.qa.record import QA_FILE, QAReport
from medseg.report.prediction_overlay import prediction_overlay_png
from medseg.report.qa_section import qa_section, table_rows
from medseg.report.section_page import SectionPage, write_section_page
from medseg.stages.outcome import StageOutcome
from medseg.workspace import Workspace

log = logging.getLogger(__name__)

STAGE = "qa"
PAGE = "qa"
OVERLAY_DIR = "qa"


def write_overlays(report: QAReport, run_dir: Path, limit: int) -> None:
    """Overlay PNGs of the first ``limit`` flagged cases; sets each one's ``overlay`` (relative to ``run_dir``).

    A case whose stores cannot be read gets no overlay (its QA record already says why).
    """
    for rank, case in enumerate(report.flagged[:limit], start=1):
        stores = {m: Path(folder) / f"{case.case_id}.zarr" for m, folder in report.models.items()}
        try:
            labels = {m: np.asarray(open_label(s, PRED_LABEL)[...]) for m, s in stores.items() if s.exists()}
            first = next(s for s in stores.values() if s.exists())
            spacing = Geometry.from_dict(read_meta(first)["geometry"]).spacing
            png = run_dir / OVERLAY_DIR / f"{rank:03d}_{case.case_id}.png"
            out = prediction_overlay_png(open_image(first), labels, png, f"#{rank} {case.case_id} · score "
                                         f"{case.score:.2f}", spacing=spacing)
        except Exception as exc:  # noqa: BLE001 - no overlay for an unreadable case; the record has the reason
            log.warning("no QA overlay for case %s: %s", case.case_id, exc)
            continue
        case.overlay = out.relative_to(run_dir).as_posix()


def write_qa(cfg: MedsegConfig, predictions: Mapping[str, str | Path], run_id: str,
             cases: Collection[str] | None = None) -> tuple[QAReport, SectionPage]:
    """Assess ``predictions`` ({model name: prediction folder}) and write ``qa.json``, overlays and the QA page."""
    ws = Workspace.at(cfg.workspace).ensure()
    run_dir = ws.reports_dir / run_id
    training, notes = workspace_training_volumes(ws)
    report = assess_predictions(predictions, training, cfg.qa, run_id, cases, notes)
    write_overlays(report, run_dir, cfg.qa.max_overlays)
    report.save(run_dir / QA_FILE)
    page = write_section_page(run_dir, PAGE, f"medseg prediction QA · {cfg.name} · {run_id}",
                              [qa_section(report, run_dir)])
    return report, page


def qa_for_report(cfg: MedsegConfig, predictions: Mapping[str, str | Path], run_id: str) -> QAReport:
    """The run's ``qa.json`` when the QA stage wrote it, else written now (``medseg report`` on its own)."""
    path = Workspace.at(cfg.workspace).reports_dir / run_id / QA_FILE
    if path.is_file():
        return QAReport.load(path)
    return write_qa(cfg, predictions, run_id)[0]


def run_qa_stage(cfg: MedsegConfig, predictions: Mapping[str, str | Path], run_id: str,
                 cases: Collection[str] | None = None) -> StageOutcome:
    """QA of ``predictions`` (``{model name: prediction folder}``; ``cases`` only, when given); see the module doc.

    Returns:
        The outcome: ``stats`` ``cases``, ``flagged``, ``table`` (one row per case, flagged first) and
        ``markdown`` (the QA page); ``outputs`` ``qa.md``, ``qa.html``, ``qa.json``.
    """
    started = time.time()
    report, page = write_qa(cfg, predictions, run_id, cases)
    top = report.flagged[0] if report.flagged else None
    stats = {
        "cases": len(report.cases),
        "flagged": len(report.flagged),
        "top": f"{top.case_id}: {top.reasons[0]}" if top is not None else "",
        "table": table_rows(report),
        "markdown": page.markdown,
    }
    files = [page.markdown_path, page.html_path, page.markdown_path.parent / QA_FILE]
    return StageOutcome(stage=STAGE, seconds=time.time() - started, stats=stats, outputs=[str(f) for f in files])
