"""Terminal rendering of stage outcomes, metric tables and workspace status (rich)."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

from rich.table import Table

from cli.common import console
from medseg.workspace import Workspace

#: the stage stats worth a glance in the terminal (the full stats are in WS/stages/*.json)
_SHOWN = (
    "files_indexed", "files_skipped", "series_ingested", "series_unchanged", "quarantined",
    "cases_processed", "cases_skipped", "val_mean_dice", "epochs", "stopped", "promoted",
    "predicted", "skipped", "failed", "seconds_per_case", "cases",
)


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.3f}"
    if isinstance(value, list | tuple) and value and all(isinstance(v, int | float) for v in value):
        return "×".join(f"{v:.3g}" if isinstance(v, float) else str(v) for v in value)
    return str(value)


def print_outcomes(outcomes: Sequence[dict[str, Any]]) -> None:
    table = Table(title="stages", show_lines=False)
    for col in ("stage", "state", "seconds", "details"):
        table.add_column(col)
    for o in outcomes:
        state = "[yellow]skipped[/]" if o.get("skipped") else "[green]done[/]"
        stats = {k: v for k, v in (o.get("stats") or {}).items() if k in _SHOWN}
        details = o.get("reason") or ", ".join(f"{k}={_fmt(v)}" for k, v in stats.items())
        table.add_row(str(o["stage"]), state, f"{o.get('seconds', 0.0):.1f}", details)
    console.print(table)


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


def print_status(ws: Workspace) -> None:
    console.print(f"workspace: {ws.root}")
    if not ws.root.exists():
        console.print("  (does not exist yet)")
        return
    runs = Table(title="last stage runs")
    for col in ("stage", "finished (UTC)", "seconds", "summary"):
        runs.add_column(col)
    for path in sorted(ws.stages_dir.glob("*.json")):
        rec = json.loads(path.read_text())
        stats = ", ".join(f"{k}={_fmt(v)}" for k, v in rec.get("stats", {}).items() if k in _SHOWN)
        finished = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(rec["finished_at"]))
        runs.add_row(rec["stage"], finished, f"{rec['finished_at'] - rec['started_at']:.1f}", stats)
    console.print(runs)
    n_vol = len(list(ws.volumes_dir.glob("*.zarr")))
    n_pre = len(list((ws.preprocessed_dir / "cases").glob("*.zarr")))
    console.print(f"volumes: {n_vol}   preprocessed cases: {n_pre}")
    champions = Table(title="champion models")
    for col in ("family", "version", "val mean Dice", "promoted (UTC)", "why"):
        champions.add_column(col)
    for pointer in sorted(ws.models_dir.glob("*/champion.json")):
        data = json.loads(pointer.read_text())
        champions.add_row(pointer.parent.name, str(data.get("version", "?")), _fmt(data.get("val_mean_dice")),
                          str(data.get("promoted_at", ""))[:19].replace("T", " "), str(data.get("reason", "")))
    console.print(champions)
