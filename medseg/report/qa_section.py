"""The prediction-QA part of a report: flagged cases first, with their reasons and overlays.

Built from ``qa.json`` (:class:`~medseg.qa.record.QAReport`) as a lead
:class:`~medseg.report.section.ReportSection`: in ``report.md`` / ``report.html`` when the metrics
report runs, and on its own page (``qa.md`` / ``qa.html``) for unlabeled studies.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from medseg.qa.record import CaseQA, QAReport
from medseg.qa.volumes import FOREGROUND
from medseg.report.section import Cell, ReportSection

SECTION_KEY = "prediction-qa"
#: table rows shown: every flagged case, then the highest-scoring others up to this many rows in all
MAX_ROWS = 50


def _volumes(case: CaseQA) -> str:
    return ", ".join(f"{m} {v.get(FOREGROUND, 0.0):.3g}" for m, v in case.volumes_ml.items())


def table_rows(report: QAReport, limit: int | None = MAX_ROWS) -> list[dict[str, Any]]:
    """One dict per case (rank order): for the section's table and a Prefect table artifact.

    Every flagged case is listed even beyond ``limit``; None lists every case.
    """
    shown = [c for n, c in enumerate(report.cases) if c.flagged or limit is None or n < limit]
    return [{"rank": n, "case": c.case_id, "score": round(c.score, 2), "flagged": c.flagged,
             "reasons": "; ".join(c.reasons) or "-", "foreground ml": _volumes(c)}
            for n, c in enumerate(shown, start=1)]


def _note(report: QAReport) -> str:
    t = report.thresholds
    parts = [
        f"{len(report.flagged)} of {len(report.cases)} predicted cases flagged 'look at this' "
        f"(models: {', '.join(report.models) or 'none'}). Score = the strongest finding relative to its threshold "
        "(1.0 = at the threshold; flagged from 1.0). Thresholds (config qa.*): volume outside "
        f"[training min / {t.get('volume_factor')}, {t.get('volume_factor')} x training max], low confidence "
        f"(< {t.get('low_confidence_below')}) on more than {t.get('low_confidence_share')} of the foreground, "
        f"model-vs-model Dice below {t.get('min_model_dice')}.",
    ]
    parts += [f"Note: {n}." for n in report.notes]
    return " ".join(parts)


def qa_section(report: QAReport, run_dir: Path) -> ReportSection:
    """The lead section: the ranked table (flagged first) and the flagged cases' overlays.

    Args:
        report: the QA report.
        run_dir: the folder of ``qa.json`` (overlay paths in the report are relative to it).
    """
    rows = table_rows(report)
    cells: list[tuple[Cell, ...]] = [
        ((str(r["rank"]), False), (r["case"], bool(r["flagged"])), (f"{r['score']:.2f}", bool(r["flagged"])),
         ("yes" if r["flagged"] else "no", bool(r["flagged"])), (r["reasons"], False), (r["foreground ml"], False))
        for r in rows
    ]
    rank = {c.case_id: n for n, c in enumerate(report.cases, start=1)}
    images = tuple((Path(run_dir) / c.overlay, f"#{rank[c.case_id]} {c.case_id} · score {c.score:.2f} · "
                    f"{c.reasons[0] if c.reasons else 'no finding'}")
                   for c in report.cases if c.overlay)
    return ReportSection(
        key=SECTION_KEY,
        title=f"Prediction QA: {len(report.flagged)} of {len(report.cases)} cases flagged",
        note=_note(report),
        headers=("rank", "case", "score", "flagged", "reasons", "foreground (ml)"),
        rows=tuple(cells),
        images=images,
        lead=True,
    )
