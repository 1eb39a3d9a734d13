"""A page of report sections on their own (``<name>.md`` + self-contained ``<name>.html``), no metrics needed.

For what runs without ground truth (prediction QA of unlabeled studies): the sections render exactly as
inside ``report.md`` / ``report.html`` (:func:`medseg.report.build.build_report` renders them the same way).
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from medseg.io.json_file import write_text_atomic
from medseg.report.build import REPORT_CSS, section_html, section_markdown
from medseg.report.section import ReportSection


@dataclass(frozen=True)
class SectionPage:
    """What :func:`write_section_page` wrote."""

    markdown_path: Path
    html_path: Path
    markdown: str


def write_section_page(run_dir: Path, name: str, title: str, sections: Sequence[ReportSection]) -> SectionPage:
    """Write ``run_dir/<name>.md`` and ``run_dir/<name>.html`` (images embedded) holding ``sections``.

    Raises:
        FileNotFoundError: a section's image does not exist.
    """
    run_dir = Path(run_dir)
    for sec in sections:
        for image, _ in sec.images:
            if not Path(image).is_file():
                raise FileNotFoundError(f"image {image} of report section {sec.key!r} does not exist")
    md = [f"# {title}", ""]
    for sec in sections:
        md += section_markdown(run_dir, sec)
    markdown = "\n".join(md).rstrip() + "\n"
    page = "\n".join([
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{REPORT_CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        *(section_html(sec) for sec in sections),
        "</body></html>",
    ]) + "\n"
    md_path, html_path = run_dir / f"{name}.md", run_dir / f"{name}.html"
    write_text_atomic(md_path, markdown, mkdir=True)
    write_text_atomic(html_path, page)
    return SectionPage(markdown_path=md_path, html_path=html_path, markdown=markdown)
