"""Per-stage timings and counts of a run: one table for Prefect artifacts, the terminal and the report."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from medseg.io.json_file import write_text_atomic
from medseg.stages.outcome import StageOutcome

#: (column, stats keys tried in order): the counts the issue asks to monitor
COUNT_COLUMNS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("files indexed", ("files_indexed", "indexed")),
    ("series ingested", ("series_ingested",)),
    ("quarantined", ("quarantined",)),
    ("out of distribution", ("out_of_distribution",)),
    ("cases preprocessed", ("cases_processed",)),
    ("predictions written", ("predicted",)),
    ("promoted", ("promoted",)),
)


def _count(stats: dict[str, Any], keys: tuple[str, ...]) -> int | float | str | None:
    for k in keys:
        v = stats.get(k)
        if isinstance(v, bool):
            return "yes" if v else "no"
        if isinstance(v, int | float):
            return v
    return None


def stage_rows(outcomes: Sequence[StageOutcome]) -> list[dict[str, Any]]:
    """One row per stage: stage, state, seconds and the monitored counts (``None`` = not applicable)."""
    rows = []
    for o in outcomes:
        row: dict[str, Any] = {
            "stage": o.stage,
            "state": "skipped" if o.skipped else "done",
            "seconds": round(o.seconds, 2),
        }
        for col, keys in COUNT_COLUMNS:
            row[col] = None if o.skipped else _count(o.stats, keys)
        rows.append(row)
    return rows


def totals_row(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Sum of seconds and counts over ``rows`` (numbers only)."""
    total: dict[str, Any] = {"stage": "total", "state": "", "seconds": round(sum(r["seconds"] for r in rows), 2)}
    for col, _ in COUNT_COLUMNS:
        vals = [r[col] for r in rows if isinstance(r.get(col), int | float) and not isinstance(r.get(col), bool)]
        total[col] = sum(vals) if vals else None
    return total


def markdown_table(rows: Sequence[dict[str, Any]]) -> str:
    """GitHub-flavoured Markdown table of ``rows`` (``None`` shown as ``-``)."""
    if not rows:
        return "(no stages)\n"
    cols = list(rows[0])
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        lines.append("| " + " | ".join("-" if r.get(c) is None else str(r.get(c)) for c in cols) + " |")
    return "\n".join(lines) + "\n"


def write_run_summary(run_dir: Path, title: str, headline: str, rows: Sequence[dict[str, Any]],
                      extra: dict[str, Any] | None = None) -> tuple[Path, Path]:
    """Write ``operations.md`` and ``operations.json`` (stage timings/counts) into ``run_dir`` atomically.

    Returns:
        ``(markdown path, json path)``.
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    md = f"# {title}\n\n{headline}\n\n## Stages\n\n{markdown_table([*rows, totals_row(rows)])}"
    data = {"title": title, "headline": headline, "stages": list(rows), **(extra or {})}
    paths = (run_dir / "operations.md", run_dir / "operations.json")
    for path, text in zip(paths, (md, json.dumps(data, indent=2, default=str)), strict=True):
        write_text_atomic(path, text)
    return paths
