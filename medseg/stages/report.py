"""Stage 5: metrics of every model's predictions against ground truth, summary files and the report."""

from __future__ import annotations

import time
from pathlib import Path

from medseg.config import MedsegConfig
from medseg.evaluation.summary import CasePair, evaluate_cases, write_summary
from medseg.io.volume_store import is_complete, read_meta
from medseg.report.build import build_report
from medseg.report.overlay import overlay_case_png
from medseg.stages.outcome import StageOutcome
from medseg.workspace import Workspace


def _pairs(ws: Workspace, prediction_dir: Path) -> list[CasePair]:
    pairs = []
    for pred in sorted(prediction_dir.glob("*.zarr")):
        case_id = pred.name.removesuffix(".zarr")
        gt = ws.volume_path(case_id)
        if is_complete(pred) and is_complete(gt):
            pairs.append(CasePair(case_id=case_id, pred_path=pred, gt_path=gt))
    return pairs


def run_report_stage(cfg: MedsegConfig, predictions: dict[str, str], run_id: str) -> StageOutcome:
    """Evaluate ``predictions`` ({model name: prediction dir}) against the ingested ground truth.

    Writes ``reports/<run_id>/<model>/summary.json``, one overlay PNG per case and model, and
    ``report.md`` / ``report.html`` comparing the models.
    """
    started = time.time()
    ws = Workspace.at(cfg.workspace).ensure()
    run_dir = ws.reports_dir / run_id
    summaries: dict[str, Path] = {}
    overlays: dict[str, list[Path]] = {}
    for name, pred_dir in predictions.items():
        pairs = _pairs(ws, Path(pred_dir))
        if not pairs:
            raise FileNotFoundError(f"no completed predictions with ground truth in {pred_dir}")
        label_names = read_meta(ws.volume_path(pairs[0].case_id))["label_names"]
        model = {"family": name, "version": Path(pred_dir).name}
        summary = evaluate_cases(pairs, {int(k): v for k, v in label_names.items()}, model=model)
        summaries[name] = write_summary(summary, run_dir / name / "summary.json")
        overlays[name] = [
            overlay_case_png(pair, run_dir / name / f"{pair.case_id}.png", f"{name} · {pair.case_id}")
            for pair in pairs
        ]
    files = build_report(run_dir, summaries, overlays, title=f"medseg report · {cfg.name} · {run_id}")
    return StageOutcome(
        stage="report",
        seconds=time.time() - started,
        stats={"table": files.table, "markdown": files.markdown, "cases": len(pairs)},
        outputs=[str(files.markdown_path), str(files.html_path), *map(str, summaries.values())],
    )


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
