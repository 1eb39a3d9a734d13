"""Terminal rendering of stage outcomes, metric tables and workspace status (rich)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.markup import escape
from rich.table import Table

from medseg.cli.common import console
from medseg.workspace import Workspace

#: the stage stats worth a glance in the terminal (the full stats are in WS/stages/*.json)
_SHOWN = (
    "files_indexed", "files_skipped", "series_ingested", "series_unchanged", "quarantined",
    "cases_processed", "cases_skipped", "val_mean_dice", "folds", "cv_mean_dice", "epochs", "stopped", "promoted",
    "predicted", "skipped", "failed", "seconds_per_case", "cases", "out_of_distribution", "flagged",
)


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.3f}"
    if isinstance(value, list | tuple) and value and all(isinstance(v, int | float) for v in value):
        return "×".join(f"{v:.3g}" if isinstance(v, float) else str(v) for v in value)
    return str(value)


def _warned(details: str, warnings: object) -> str:
    """``details`` followed by the stage's warnings in yellow (e.g. training stopped by the time cap)."""
    shown = [str(w) for w in warnings] if isinstance(warnings, list) else []
    return "\n".join([details, *(f"[bold yellow]warning:[/] {escape(w)}" for w in shown)]).strip()


def print_outcomes(outcomes: Sequence[dict[str, Any]]) -> None:
    table = Table(title="stages", show_lines=False)
    for col in ("stage", "state", "seconds", "details"):
        table.add_column(col)
    for o in outcomes:
        state = "[yellow]skipped[/]" if o.get("skipped") else "[green]done[/]"
        stats = {k: v for k, v in (o.get("stats") or {}).items() if k in _SHOWN}
        details = o.get("reason") or ", ".join(f"{k}={_fmt(v)}" for k, v in stats.items())
        table.add_row(str(o["stage"]), state, f"{o.get('seconds', 0.0):.1f}", _warned(details, o.get("warnings")))
    console.print(table)


def print_qa(outcomes: Sequence[dict[str, Any]]) -> None:
    """One line per QA outcome among ``outcomes``: how many predicted cases were flagged, and where to look."""
    for o in outcomes:
        if o.get("stage") != "qa" or o.get("skipped"):
            continue
        stats = o.get("stats") or {}
        flagged, cases = int(stats.get("flagged", 0)), int(stats.get("cases", 0))
        style = "bold yellow" if flagged else "green"
        where = escape(str((o.get("outputs") or ["?"])[0]))
        console.print(f"[{style}]QA: {flagged} of {cases} predicted case(s) flagged 'look at this'[/]"
                      + (f" (flagged first: {where})" if flagged else f" ({where})"), soft_wrap=True)  # a whole path


def print_report_table(rows: Sequence[dict[str, Any]]) -> None:
    if not rows:
        return
    table = Table(title="held-out test cases")
    for col in rows[0]:
        table.add_column(str(col), justify="right" if col not in ("model", "class") else "left")
    for row in rows:
        table.add_row(*[f"{v:.3f}" if isinstance(v, float) else str(v) for v in row.values()])
    console.print(table)


def print_rows(rows: Sequence[dict[str, Any]], title: str) -> None:
    if not rows:
        console.print(f"{title}: (empty)")
        return
    table = Table(title=f"{title} ({len(rows)})")
    for col in rows[0]:
        table.add_column(str(col), overflow="fold")
    for row in rows:
        table.add_row(*[_fmt(v) for v in row.values()])
    console.print(table)


def _ago(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ts))


def print_status(ws: Workspace, families: Sequence[str] = ("cnn", "gan"), sources: Sequence[Path] | None = None,
                 flow_runs: Sequence[dict[str, Any]] | None = None, workspace_arg: str | None = None) -> None:
    """Last runs (stage records + Prefect flow runs), the queue of pending work, the champions, what to run next.

    A workspace where nothing was ingested yet gets no tables, only the next command.
    """
    from medseg.ops.status import champions, last_stage_runs, next_step, pending_work

    console.print(f"workspace: {ws.root}")
    runs = last_stage_runs(ws)
    if runs:
        table = Table(title="last stage runs")
        for col in ("stage", "state", "finished (UTC)", "seconds", "summary"):
            table.add_column(col)
        for run in runs:
            stats = ", ".join(f"{k}={_fmt(v)}" for k, v in run.stats.items() if k in _SHOWN)
            table.add_row(run.stage, run.state, _ago(run.finished_at), f"{run.seconds:.1f}",
                          _warned(stats, run.stats.get("warnings")))
        console.print(table)
    if flow_runs is not None:
        print_rows(list(flow_runs), title="Prefect flow runs")
    work = pending_work(ws, list(families), list(sources) if sources else None)
    champs = champions(ws, list(families))
    if ws.catalog_path.is_file() or runs:
        queue = Table(title="pending work")
        queue.add_column("what")
        queue.add_column("count", justify="right")
        queue.add_row("files not yet indexed", "?" if work.files_unindexed is None else str(work.files_unindexed))
        if work.bulk_batches_left is not None:
            queue.add_row("bulk batches left (latest manifest)", str(work.bulk_batches_left))
        queue.add_row("cases ingested", str(work.cases_ingested))
        queue.add_row("cases not preprocessed", str(work.cases_not_preprocessed))
        for family, n in work.cases_without_prediction.items():
            queue.add_row(f"cases without a {family} champion prediction", str(n))
        console.print(queue)
    if any(c.version or c.error for c in champs):
        table = Table(title="champion models")
        for col in ("family", "version", "val mean Dice", "promoted (UTC)", "why"):
            table.add_column(col)
        for c in champs:
            why = f"[red]{escape(c.error)}[/]" if c.error else _warned(escape(c.reason), c.warnings)
            table.add_row(c.family, c.version or "(none)",
                          _fmt(c.val_mean_dice) if c.val_mean_dice is not None else "-", c.promoted_at, why)
        console.print(table)
    step = next_step(ws, work, champs)
    if step is None:
        console.print("next: nothing to do, every stage is up to date")
    else:
        flag = f" --workspace {workspace_arg}" if workspace_arg else ""
        console.print(f"next: [bold]{step.command}{flag}[/]  ({step.reason})", highlight=False, soft_wrap=True)
