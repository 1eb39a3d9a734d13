"""Evaluation report: overlay PNGs and the self-contained markdown/HTML report."""

from medseg.report.build import ReportFiles, build_report, format_table, summary_table
from medseg.report.overlay import OVERLAY_SIZE_PX, overlay_case_png, overlay_png, pick_slice

__all__ = [
    "OVERLAY_SIZE_PX",
    "overlay_case_png",
    "ReportFiles",
    "build_report",
    "format_table",
    "overlay_png",
    "pick_slice",
    "summary_table",
]
