"""The drift report as a section of the metrics report of the same run (``reports/<run_id>/report.md``)."""

from __future__ import annotations

from pathlib import Path

from medseg.drift.report import DRIFT_JSON, DRIFT_PNG, DriftReport
from medseg.report.section import ReportSection

SECTION_KEY = "drift"


def drift_section(report: DriftReport, png: Path | None = None) -> ReportSection:
    """The section: headline and notes, one row per case (out-of-distribution ones bold), the plot.

    It leads the report (before the metrics) when a case is out of distribution.
    """
    note = report.headline() + "." + "".join(f" {n}." for n in report.notes)
    rows = tuple(
        ((r["case"], r["out of distribution"] == "yes"), (r["out of distribution"], r["out of distribution"] == "yes"),
         (r["reasons"], False))
        for r in report.table()
    )
    images = ((png, "new cases over the training distribution"),) if png is not None and png.is_file() else ()
    return ReportSection(key=SECTION_KEY, title="Data drift: new cases vs the training cases", note=note,
                         headers=("case", "out of distribution", "reasons"), rows=rows, images=images,
                         lead=bool(report.flagged))


def run_drift_section(run_dir: Path) -> ReportSection | None:
    """The section of the drift report written into ``run_dir`` by the same run (None when there is none)."""
    path = Path(run_dir) / DRIFT_JSON
    if not path.is_file():
        return None
    return drift_section(DriftReport.load(path), Path(run_dir) / DRIFT_PNG)
