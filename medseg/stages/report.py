"""Stage 5: metrics of every model's predictions against ground truth, summary files and the report."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

from medseg.config import MedsegConfig
from medseg.drift.section import run_drift_section
from medseg.evaluation.summary import CasePair, Summary, evaluate_cases, write_summary
from medseg.evaluation.table import CSV_NAME, write_summary_csv
from medseg.io.bundle import ENSEMBLE, BundleError, bundle_kind, read_cv_metrics, read_metadata
from medseg.io.volume_store import is_complete, read_meta
from medseg.report.build import build_report
from medseg.report.deltas import best_and_worst, delta_table, previous_summary
from medseg.report.overlay import overlay_case_png
from medseg.report.plots import boxplots
from medseg.report.qa_section import qa_section
from medseg.stages.outcome import StageOutcome
from medseg.stages.qa import qa_for_report
from medseg.training.budget import capped_warning
from medseg.workspace import Workspace


def _pairs(ws: Workspace, prediction_dir: Path, cases: set[str] | None = None) -> list[CasePair]:
    pairs = []
    for pred in sorted(prediction_dir.glob("*.zarr")):
        case_id = pred.name.removesuffix(".zarr")
        if cases is not None and case_id not in cases:
            continue
        gt = ws.volume_path(case_id)
        if is_complete(pred) and is_complete(gt):
            pairs.append(CasePair(case_id=case_id, pred_path=pred, gt_path=gt))
    return pairs


def _model_of(pred_dir: Path) -> tuple[str, str]:
    """``(family, version)`` of ``predictions/<family>/<version>``."""
    return pred_dir.parent.name, pred_dir.name


def _model_warnings(ws: Workspace, name: str, family: str, version: str) -> list[str]:
    """Warnings about how the model was trained (a run stopped by the time cap), from its bundle metadata."""
    try:
        warning = capped_warning(read_metadata(ws.model_family_dir(family) / version))
    except BundleError:
        return []
    return [f"{name} ({version}): {warning}"] if warning else []


def _cv_metrics(bundle: Path) -> dict[str, Any] | None:
    """The ``cv_metrics.json`` of an ensemble bundle, None for a single model (or a missing bundle)."""
    try:
        return read_cv_metrics(bundle) if bundle_kind(read_metadata(bundle)) == ENSEMBLE else None
    except BundleError:
        return None


def run_report_stage(cfg: MedsegConfig, predictions: dict[str, str], run_id: str,
                     cases: list[str] | None = None) -> StageOutcome:
    """Evaluate ``predictions`` ({model name: prediction dir}) against the ingested ground truth.

    ``cases`` limits the evaluation to these case ids (e.g. the held-out test split, so that a
    nightly run that predicted every ingested case does not report on cases the model trained on).

    Writes, under ``reports/<run_id>/``: ``<model>/summary.json`` (nnU-Net superset) and
    ``<model>/metrics.csv`` (case x class rows), overlay PNGs of each model's best and worst case,
    box plots per metric (``plots/box_<metric>.png``), and ``report.md`` / ``report.html`` with the
    tables, deltas between the models (e.g. CNN vs GAN, paired over shared cases) and against the
    previous champion's report of each model (the newest earlier report of another version), the
    plots and the bundles' training curves embedded, and the drift check of the same run (``drift.json`` in
    ``reports/<run_id>/``, :mod:`medseg.drift.section`) when there is one. NSD tolerance:
    ``cfg.infer.nsd_tolerance_mm``. The prediction QA of the run (``qa.json``, written by the QA stage, else
    here: every predicted case, labeled or not) leads the report: flagged cases first, with overlays.
    """
    started = time.time()
    ws = Workspace.at(cfg.workspace).ensure()
    run_dir = ws.reports_dir / run_id
    summaries: dict[str, Path] = {}
    loaded: dict[str, Summary] = {}
    csvs: dict[str, Path] = {}
    overlays: dict[str, list[Path]] = {}
    curves: dict[str, Path] = {}
    cross_validation: dict[str, dict[str, Any]] = {}
    warnings: list[str] = []
    n_cases = 0
    for name, pred_dir in predictions.items():
        pairs = _pairs(ws, Path(pred_dir), set(cases) if cases is not None else None)
        if not pairs:
            which = "" if cases is None else f" among the {len(cases)} selected cases"
            raise FileNotFoundError(f"no completed predictions with ground truth in {pred_dir}{which}")
        n_cases += len(pairs)
        label_names = read_meta(ws.volume_path(pairs[0].case_id))["label_names"]
        family, version = _model_of(Path(pred_dir))
        model = {"family": family, "version": version}
        warnings += _model_warnings(ws, name, family, version)
        summary = evaluate_cases(pairs, {int(k): v for k, v in label_names.items()},
                                 nsd_tolerance_mm=cfg.infer.nsd_tolerance_mm, model=model)
        loaded[name] = summary
        summaries[name] = write_summary(summary, run_dir / name / "summary.json")
        csvs[name] = write_summary_csv(summary, run_dir / name / CSV_NAME)
        by_id = {p.case_id: p for p in pairs}
        picks = best_and_worst(summary)
        tags = ["best", "worst"] if len(picks) == 2 else ["only"]
        overlays[name] = [
            overlay_case_png(by_id[cid], run_dir / name / f"{tag}_{cid}.png", f"{name} · {tag} case · {cid}")
            for tag, cid in zip(tags, picks, strict=True)
        ]
        cv = _cv_metrics(ws.model_family_dir(family) / version)
        if cv is not None:
            cross_validation[name] = cv
        curve = ws.model_family_dir(family) / version / "curves.png"
        if curve.is_file():
            curves[name] = curve
    deltas = [delta_table(loaded[a], loaded[b], a, b) for i, a in enumerate(loaded) for b in list(loaded)[i + 1:]]
    for name, summary in loaded.items():
        version = str(summary.model.get("version", ""))
        previous = previous_summary(ws.reports_dir, name, version, exclude_run=run_id)
        if previous is not None:
            prev_version = str(previous[1].model.get("version", "?"))
            deltas.append(delta_table(summary, previous[1], f"{name} {version}", f"{name} {prev_version}",
                                      title=f"{name}: new model vs previous champion ({prev_version})"))
    plots = boxplots(loaded, run_dir / "plots")
    qa = qa_for_report(cfg, predictions, run_id)
    sections = [s for s in (run_drift_section(run_dir),) if s is not None]  # the same run's drift check
    sections.append(qa_section(qa, run_dir))
    files = build_report(run_dir, summaries, overlays, title=f"medseg report · {cfg.name} · {run_id}",
                         deltas=deltas, boxplots=plots, curves=curves, csv_files=csvs, warnings=warnings,
                         cross_validation=cross_validation, sections=sections)
    delta_rows = [{"comparison": d.title, **{k: _json_number(v) for k, v in r.items()}} for d in deltas for r in d.rows]
    return StageOutcome(
        stage="report",
        seconds=time.time() - started,
        stats={"table": files.table, "markdown": files.markdown, "deltas": delta_rows, "cases": n_cases,
               "warnings": warnings, "qa_flagged": len(qa.flagged)},
        outputs=[str(files.markdown_path), str(files.html_path), *map(str, [*summaries.values(), *csvs.values()])],
    )


def _json_number(value: object) -> object:
    return None if isinstance(value, float) and math.isnan(value) else value


def champion_predictions(ws: Workspace) -> dict[str, str]:
    """{family: prediction dir} for each family whose champion has predictions (for `medseg report`)."""
    from medseg.training.bundle import champion

    found: dict[str, str] = {}
    for family_dir in sorted(p for p in ws.models_dir.glob("*") if p.is_dir()):
        bundle = champion(ws, family_dir.name)
        if bundle is None:
            continue
        pred_dir = ws.prediction_dir(family_dir.name, Path(bundle).name)
        if any(pred_dir.glob("*.zarr")):
            found[family_dir.name] = str(pred_dir)
    return found
