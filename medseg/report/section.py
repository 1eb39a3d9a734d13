"""An extra report section (drift, prediction QA ...): a note, one table and images, shown in both renderers.

Stages other than evaluation build their part of ``report.md`` / ``report.html`` as a :class:`ReportSection`
and hand it to :func:`medseg.report.build.build_report`, which renders it like its own tables.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

#: A table cell: (text, bold).
Cell = tuple[str, bool]


@dataclass(frozen=True)
class ReportSection:
    """One titled section of the report.

    Attributes:
        key: stable id (``<section id="key">`` in the HTML; lets tests and readers find it).
        title: the heading.
        note: a paragraph under the heading (plain text).
        headers: the table's column names (no table when empty).
        rows: the table's rows, cells as ``(text, bold)``.
        images: ``(PNG path, caption)`` pairs, embedded in the HTML and linked from the markdown.
        lead: shown first (after the warnings, before the metrics), for what needs a reader's attention.
    """

    key: str
    title: str
    note: str = ""
    headers: tuple[str, ...] = ()
    rows: tuple[tuple[Cell, ...], ...] = ()
    images: tuple[tuple[Path, str], ...] = field(default_factory=tuple)
    lead: bool = False
