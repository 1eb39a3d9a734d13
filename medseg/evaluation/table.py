"""``metrics.csv``: the per-case metrics of a summary as one flat table (for spreadsheets, pandas, R).

One row per (case, class); columns ``case_id, class, label, <METRIC_KEYS...>, reference_file,
prediction_file``. NaN (class absent from both masks) is an empty cell. Written next to
``summary.json`` by the report stage.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

from medseg.evaluation.metrics import METRIC_KEYS
from medseg.evaluation.summary import Summary
from medseg.io.json_file import atomic_path

CSV_NAME = "metrics.csv"
CSV_COLUMNS: tuple[str, ...] = ("case_id", "class", "label", *METRIC_KEYS, "reference_file", "prediction_file")


def summary_rows(summary: Summary) -> list[dict[str, Any]]:
    """Rows of :data:`CSV_COLUMNS` (metric values as floats; NaN kept as NaN), cases then classes in order."""
    rows = []
    for case in summary.metric_per_case:
        for label in sorted(case.metrics):
            values = case.metrics[label]
            row: dict[str, Any] = {
                "case_id": case.case_id,
                "class": summary.label_names.get(label, f"class_{label}"),
                "label": label,
            }
            row.update({k: float(values.get(k, math.nan)) for k in METRIC_KEYS})
            row["reference_file"] = case.reference_file
            row["prediction_file"] = case.prediction_file
            rows.append(row)
    return rows


def _cell(value: Any) -> Any:
    if isinstance(value, float):
        return "" if math.isnan(value) else repr(value)
    return value


def write_summary_csv(summary: Summary, path: Path) -> Path:
    """Atomically write the per-case table of ``summary`` to ``path`` (see the module docstring)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(CSV_COLUMNS))
        writer.writeheader()
        for row in summary_rows(summary):
            writer.writerow({k: _cell(v) for k, v in row.items()})
    return path
