"""Run ids: one format for every run medseg records (ingest runs, report folders, flow summaries)."""

from __future__ import annotations

import time
import uuid


def new_run_id(prefix: str = "", *, unique: bool = False) -> str:
    """``[<prefix>-]YYYYMMDD-HHMMSS`` in UTC (sorts by time), with ``-<6 hex digits>`` when ``unique``.

    Args:
        prefix: what ran (``nightly``, ``bulk``); none for pipeline reports and ingest runs.
        unique: add a random suffix, for ids that are a primary key (two runs may start in one second).
    """
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    run_id = f"{prefix}-{stamp}" if prefix else stamp
    return f"{run_id}-{uuid.uuid4().hex[:6]}" if unique else run_id
