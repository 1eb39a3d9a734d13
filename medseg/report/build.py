"""Evaluation report: ``report.md`` + self-contained ``report.html`` comparing models side by side.

Input: one ``summary.json`` per model (see :mod:`medseg.evaluation.summary`) and overlay PNGs.
Output, in ``run_dir``:

* ``report.md`` — tables in GitHub markdown, overlays linked by relative path;
* ``report.html`` — the same content with inline CSS and the PNGs embedded as base64
  ``data:`` URIs: no external resource, so the file can be mailed or attached as-is.

Tables: (1) comparison — one row per (class, metric), one column per model, best value in bold
(higher is better for Dice/IoU/NSD, lower for HD95/ASSD/|VolumeDiff|); (2) per model — mean Dice,
IoU, HD95, NSD per class plus the foreground mean (also returned as ``ReportFiles.table`` for a
Prefect table artifact, NaN as None); (3) per case — foreground-mean Dice of each model.
"""

from __future__ import annotations

import base64
import html
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medseg.evaluation.summary import Summary, load_summary
from medseg.report.cross_validation import cv_rows
from medseg.report.deltas import DeltaTable
from medseg.report.section import Cell, ReportSection

#: Metrics of the report tables and whether higher is better.
REPORT_METRICS: tuple[tuple[str, bool], ...] = (
    ("Dice", True),
    ("IoU", True),
    ("HD95", False),
    ("NSD", True),
    ("ASSD", False),
    ("Precision", True),
    ("Recall", True),
    ("Lesion_F1", True),
)
_TABLE_METRICS = ("Dice", "IoU", "HD95", "NSD")
_UNITS = {"HD95": " (mm)", "ASSD": " (mm)", "VolumeDiff_ml": " (ml)"}
FOREGROUND = "foreground mean"


@dataclass
class ReportFiles:
    """What :func:`build_report` wrote and the per-model table (rows for a Prefect table artifact)."""

    markdown_path: Path
    html_path: Path
    markdown: str
    table: list[dict[str, Any]]


def _fmt(metric: str, value: float | None) -> str:
    if value is None or math.isnan(value):
        return "n/a"
    if metric in ("HD95", "ASSD", "VolumeDiff_ml"):
        return f"{value:.2f}"
    return f"{value:.4f}"


def _class_rows(summary: Summary) -> list[tuple[str, int | None, Mapping[str, float]]]:
    rows: list[tuple[str, int | None, Mapping[str, float]]] = [
        (summary.label_names.get(lab, f"class_{lab}"), lab, summary.mean[lab]) for lab in sorted(summary.mean)
    ]
    rows.append((FOREGROUND, None, summary.foreground_mean))
    return rows


def summary_table(summaries: Mapping[str, Summary]) -> list[dict[str, Any]]:
    """Rows ``{"model", "class", "label", "Dice", "IoU", "HD95_mm", "NSD", "n_cases"}`` (NaN -> None).

    ``label`` is the class value, or None for the foreground-mean row.
    """
    rows: list[dict[str, Any]] = []
    for model, summary in summaries.items():
        for name, label, values in _class_rows(summary):
            row: dict[str, Any] = {"model": model, "class": name, "label": label}
            for metric in _TABLE_METRICS:
                v = values.get(metric, math.nan)
                row["HD95_mm" if metric == "HD95" else metric] = None if math.isnan(v) else round(float(v), 6)
            row["n_cases"] = len(summary.metric_per_case)
            rows.append(row)
    return rows


def format_table(summaries: Mapping[str, Summary]) -> str:
    """Plain-text, column-aligned table of mean Dice/IoU/HD95/NSD per model and class (for the terminal)."""
    headers = ["model", "class", "Dice", "IoU", "HD95 mm", "NSD", "cases"]
    body = [
        [
            r["model"],
            r["class"],
            _fmt("Dice", r["Dice"]),
            _fmt("IoU", r["IoU"]),
            _fmt("HD95", r["HD95_mm"]),
            _fmt("NSD", r["NSD"]),
            str(r["n_cases"]),
        ]
        for r in summary_table(summaries)
    ]
    widths = [max(len(h), *(len(row[i]) for row in body)) if body else len(h) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    return "\n".join([line(headers), line(["-" * w for w in widths]), *(line(r) for r in body)])


# --- table models shared by the markdown and HTML renderers ------------------------------------
# A cell is (text, bold).
_Cell = Cell


def _comparison(summaries: Mapping[str, Summary]) -> tuple[list[str], list[list[_Cell]]]:
    models = list(summaries)
    class_names: list[tuple[str, int | None]] = []
    for s in summaries.values():
        for name, label, _ in _class_rows(s):
            if (name, label) not in class_names and label is not None:
                class_names.append((name, label))
    class_names.sort(key=lambda c: c[1] if c[1] is not None else -1)
    class_names.append((FOREGROUND, None))
    rows: list[list[_Cell]] = []
    for name, label in class_names:
        for metric, higher_better in REPORT_METRICS:
            values: list[float] = []
            for s in summaries.values():
                src = s.foreground_mean if label is None else s.mean.get(label, {})
                values.append(float(src.get(metric, math.nan)))
            finite = [v for v in values if not math.isnan(v)]
            best = (max(finite) if higher_better else min(finite)) if len(finite) > 1 else None
            cells: list[_Cell] = [(name, False), (metric + _UNITS.get(metric, ""), False)]
            cells += [(_fmt(metric, v), best is not None and v == best) for v in values]
            rows.append(cells)
    return ["class", "metric", *models], rows


def _per_case(summaries: Mapping[str, Summary]) -> tuple[list[str], list[list[_Cell]]]:
    per_model: dict[str, dict[str, float]] = {}
    order: list[str] = []
    for model, s in summaries.items():
        per_model[model] = {}
        for c in s.metric_per_case:
            dices = [
                m["Dice"]
                for lab, m in c.metrics.items()
                if lab != 0 and not math.isnan(m.get("Dice", math.nan))
            ]
            per_model[model][c.case_id] = sum(dices) / len(dices) if dices else math.nan
            if c.case_id not in order:
                order.append(c.case_id)
    rows = [
        [(case, False)] + [(_fmt("Dice", per_model[m].get(case, math.nan)), False) for m in summaries]
        for case in order
    ]
    return ["case", *(f"Dice {m}" for m in summaries)], rows


def _md_table(headers: Sequence[str], rows: Sequence[Sequence[_Cell]]) -> str:
    def cell(text: str, bold: bool) -> str:
        text = text.replace("|", "\\|")
        return f"**{text}**" if bold else text

    out = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    out += ["| " + " | ".join(cell(t, b) for t, b in r) + " |" for r in rows]
    return "\n".join(out)


def _html_table(headers: Sequence[str], rows: Sequence[Sequence[_Cell]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>"
        + "".join(f"<td>{'<b>' if b else ''}{html.escape(t)}{'</b>' if b else ''}</td>" for t, b in r)
        + "</tr>"
        for r in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _model_info(model: str, s: Summary) -> list[tuple[str, str]]:
    info = [("cases", str(len(s.metric_per_case))), ("NSD tolerance (mm)", _fmt("HD95", s.nsd_tolerance_mm))]
    info += [(str(k), str(v)) for k, v in sorted(s.model.items())]
    return info


#: the stylesheet inlined in every report page
REPORT_CSS = " ".join(
    [
        "body{font-family:system-ui,Helvetica,Arial,sans-serif;margin:2em;color:#222;max-width:1100px}",
        "table{border-collapse:collapse;margin:0.8em 0 1.6em}",
        "th,td{border:1px solid #ccc;padding:3px 9px;text-align:right}",
        "th{background:#f0f0f0}td:first-child,td:nth-child(2),th:first-child{text-align:left}",
        "img{max-width:100%;border:1px solid #ddd;margin:0.4em 0}",
        "figure{margin:0 0 1.2em}figcaption{color:#666;font-size:90%}",
        ".warnings{background:#fff4d6;border-left:4px solid #d99a00;padding:0.2em 1em;margin:1em 0}",
    ]
)


def _load(summaries: Mapping[str, Path | Summary]) -> dict[str, Summary]:
    if not summaries:
        raise ValueError("build_report needs at least one model summary, got none")
    return {m: s if isinstance(s, Summary) else load_summary(Path(s)) for m, s in summaries.items()}


def _check_overlays(overlays: Mapping[str, Sequence[Path]]) -> None:
    for model, paths in overlays.items():
        for p in paths:
            if not Path(p).is_file():
                raise FileNotFoundError(
                    f"overlay PNG {p} of model {model!r} does not exist (re-run the report stage)"
                )


def _rel(run_dir: Path, p: Path) -> str:
    return Path(os.path.relpath(Path(p).resolve(), Path(run_dir).resolve())).as_posix()


def _md_image(run_dir: Path, p: Path, alt: str) -> str:
    return f"![{alt}]({_rel(run_dir, p)})\n"


def _html_image(p: Path, caption: str) -> str:
    data = base64.b64encode(Path(p).read_bytes()).decode("ascii")
    cap = html.escape(caption)
    return f'<figure><img alt="{cap}" src="data:image/png;base64,{data}"><figcaption>{cap}</figcaption></figure>'


def _delta_note(d: DeltaTable) -> str:
    over = f"the {d.n_cases} cases both models predicted" if d.paired else "each model's own cases (no shared cases)"
    return f"Delta = {d.a} - {d.b}, means over {over}. 'better' names the winner of each row."


def _delta_cells(d: DeltaTable) -> tuple[list[str], list[list[_Cell]]]:
    headers = ["class", "metric", d.a, d.b, "delta", "better"]
    rows: list[list[_Cell]] = []
    for r in d.rows:
        metric = str(r["metric"])
        delta = r["delta"]
        text = "n/a" if math.isnan(delta) else ("+" if delta > 0 else "") + _fmt(metric, delta)
        rows.append([(str(r["class"]), False), (metric + _UNITS.get(metric, ""), False), (_fmt(metric, r["a"]), False),
                     (_fmt(metric, r["b"]), False), (text, False), (str(r["better"]), bool(r["better"]))])
    return headers, rows


def section_markdown(run_dir: Path, s: ReportSection) -> list[str]:
    """Markdown lines of a section (images linked relative to ``run_dir``)."""
    out = [f"## {s.title}", ""]
    if s.note:
        out += [s.note, ""]
    if s.headers:
        out += [_md_table(s.headers, s.rows), ""]
    out += [_md_image(run_dir, p, caption) for p, caption in s.images]
    return out + ([""] if s.images else [])


def section_html(s: ReportSection) -> str:
    """HTML of a section (``<section id=key>``; images embedded)."""
    parts = [f'<section id="{html.escape(s.key)}"><h2>{html.escape(s.title)}</h2>']
    if s.note:
        parts.append(f"<p>{html.escape(s.note)}</p>")
    if s.headers:
        parts.append(_html_table(s.headers, s.rows))
    parts += [_html_image(p, caption) for p, caption in s.images]
    return "".join(parts) + "</section>"


def _html_warnings(warnings: Sequence[str]) -> str:
    if not warnings:
        return ""
    items = "".join(f"<li><b>warning</b>: {html.escape(w)}</li>" for w in warnings)
    return f'<div class="warnings"><h2>Warnings</h2><ul>{items}</ul></div>'


def build_report(
    run_dir: Path,
    summaries: Mapping[str, Path | Summary],
    overlays: Mapping[str, Sequence[Path]],
    title: str,
    *,
    deltas: Sequence[DeltaTable] = (),
    boxplots: Sequence[Path] = (),
    curves: Mapping[str, Path] | None = None,
    csv_files: Mapping[str, Path] | None = None,
    warnings: Sequence[str] = (),
    cross_validation: Mapping[str, Mapping[str, Any]] | None = None,
    sections: Sequence[ReportSection] = (),
) -> ReportFiles:
    """Write ``run_dir/report.md`` and ``run_dir/report.html``.

    Args:
        run_dir: output folder (created), e.g. ``Workspace.reports_dir / run_id``.
        summaries: ``{model name: summary.json path (or loaded Summary)}``, in display order.
        overlays: ``{model name: [PNG paths]}`` (may be empty).
        title: report title.
        deltas: comparison tables (CNN vs GAN, vs the previous champion), see :mod:`medseg.report.deltas`.
        boxplots: PNGs of per-case metric distributions (:func:`medseg.report.plots.boxplots`).
        curves: ``{model name: training curves PNG}`` (the bundle's ``curves.png``).
        csv_files: ``{model name: metrics.csv}``, linked from the report.
        warnings: shown first, under "Warnings" (e.g. a model whose training the time cap stopped).
        cross_validation: ``{model name: cv_metrics.json content}`` of k-fold ensemble models, shown as
            a per-fold and pooled Dice table (:func:`medseg.report.cross_validation.cv_rows`).
        sections: extra sections of other stages (drift, prediction QA); ``lead`` ones come first.

    Returns:
        Paths written, the markdown text and the per-model table rows (see :func:`summary_table`).
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    loaded = _load(summaries)
    curves = dict(curves or {})
    _check_overlays({**overlays, "boxplots": list(boxplots), **{f"curves {k}": [v] for k, v in curves.items()},
                     **{f"section {sec.key}": [p for p, _ in sec.images] for sec in sections}})
    lead = [sec for sec in sections if sec.lead]
    tail = [sec for sec in sections if not sec.lead]
    table = summary_table(loaded)
    per_model_headers = ["model", "class", "Dice", "IoU", "HD95 (mm)", "NSD", "cases"]
    per_model_rows: list[list[_Cell]] = [
        [
            (str(r["model"]), False),
            (str(r["class"]), False),
            (_fmt("Dice", r["Dice"]), False),
            (_fmt("IoU", r["IoU"]), False),
            (_fmt("HD95", r["HD95_mm"]), False),
            (_fmt("NSD", r["NSD"]), False),
            (str(r["n_cases"]), False),
        ]
        for r in table
    ]
    cmp_headers, cmp_rows = _comparison(loaded)
    case_headers, case_rows = _per_case(loaded)
    models = ", ".join(loaded)
    intro = (
        f"Models: {models}. Means over test cases; NaN (class absent from both reference and prediction) "
        "is ignored. Best value per row in bold."
    )

    md: list[str] = [f"# {title}", ""]
    if warnings:
        md += ["## Warnings", "", *[f"- **warning**: {w}" for w in warnings], ""]
    for sec in lead:
        md += section_markdown(run_dir, sec)
    md += [intro, "", "## Comparison", "", _md_table(cmp_headers, cmp_rows), ""]
    md += ["## Per model", "", _md_table(per_model_headers, per_model_rows), ""]
    md += ["## Per case (foreground-mean Dice)", "", _md_table(case_headers, case_rows), ""]
    for d in deltas:
        md += [f"## Deltas: {d.title}", "", _delta_note(d), "", _md_table(*_delta_cells(d)), ""]
    cv_headers, cv_cells = cv_rows(cross_validation or {})
    cv_table = [[(c, False) for c in row] for row in cv_cells]
    if cv_table:
        md += ["## Cross-validation (training cases, out-of-fold)", "", _md_table(cv_headers, cv_table), ""]
    if boxplots:
        md += ["## Distributions", ""] + [_md_image(run_dir, p, Path(p).stem) for p in boxplots] + [""]
    if curves:
        md += ["## Training curves", ""] + [_md_image(run_dir, p, f"{m} curves") for m, p in curves.items()] + [""]
    if csv_files:
        md += ["## Files", ""] + [f"- {m}: [{Path(p).name}]({_rel(run_dir, p)})" for m, p in csv_files.items()] + [""]
    for sec in tail:
        md += section_markdown(run_dir, sec)
    md += ["## Models", ""]
    for model, s in loaded.items():
        md += [
            f"### {model}",
            "",
            _md_table(["key", "value"], [[(k, False), (v, False)] for k, v in _model_info(model, s)]),
            "",
        ]
    if any(overlays.values()):
        md += ["## Overlays", ""]
        for model, paths in overlays.items():
            md += [f"### {model}", ""]
            for p in paths:
                rel = Path(os.path.relpath(Path(p).resolve(), run_dir.resolve())).as_posix()
                md += [f"![{model} {Path(p).stem}]({rel})", ""]
    markdown = "\n".join(md).rstrip() + "\n"

    h: list[str] = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{REPORT_CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>{_html_warnings(warnings)}",
        *(section_html(sec) for sec in lead),
        f"<p>{html.escape(intro)}</p>",
        "<h2>Comparison</h2>" + _html_table(cmp_headers, cmp_rows),
        "<h2>Per model</h2>" + _html_table(per_model_headers, per_model_rows),
        "<h2>Per case (foreground-mean Dice)</h2>" + _html_table(case_headers, case_rows),
    ]
    for d in deltas:
        h.append(f"<h2>Deltas: {html.escape(d.title)}</h2><p>{html.escape(_delta_note(d))}</p>"
                 + _html_table(*_delta_cells(d)))
    if cv_table:
        h.append("<h2>Cross-validation (training cases, out-of-fold)</h2>" + _html_table(cv_headers, cv_table))
    if boxplots:
        h.append("<h2>Distributions</h2>" + "".join(_html_image(p, Path(p).stem) for p in boxplots))
    if curves:
        figures = "".join(_html_image(p, f"{m} training curves") for m, p in curves.items())
        h.append("<h2>Training curves</h2>" + figures)
    if csv_files:
        h.append("<h2>Files</h2><ul>" + "".join(
            f"<li>{html.escape(m)}: {html.escape(_rel(run_dir, p))}</li>" for m, p in csv_files.items()) + "</ul>")
    h += [section_html(sec) for sec in tail]
    h.append("<h2>Models</h2>")
    for model, s in loaded.items():
        info_rows = [[(k, False), (v, False)] for k, v in _model_info(model, s)]
        h.append(f"<h3>{html.escape(model)}</h3>" + _html_table(["key", "value"], info_rows))
    if any(overlays.values()):
        h.append("<h2>Overlays</h2>")
        for model, paths in overlays.items():
            h.append(f"<h3>{html.escape(model)}</h3>")
            for p in paths:
                data = base64.b64encode(Path(p).read_bytes()).decode("ascii")
                name = html.escape(Path(p).stem)
                h.append(
                    f'<figure><img alt="{html.escape(model)} {name}" src="data:image/png;base64,{data}">'
                    f"<figcaption>{html.escape(model)}: {name}</figcaption></figure>"
                )
    h.append("</body></html>")

    md_path = run_dir / "report.md"
    html_path = run_dir / "report.html"
    md_path.write_text(markdown, encoding="utf-8")
    html_path.write_text("\n".join(h) + "\n", encoding="utf-8")
    return ReportFiles(markdown_path=md_path, html_path=html_path, markdown=markdown, table=table)
