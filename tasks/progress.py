"""Progress reporting from inside a task: throttled log lines plus a Prefect progress artifact."""

from __future__ import annotations

import logging
import time
from uuid import UUID

from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.logging import get_run_logger


class TaskProgress:
    """Callable ``(label, done, total)`` handed to medseg stage functions.

    Logs at most every ``min_interval`` seconds (and at completion) and keeps one progress artifact
    per task run up to date, so long stages are visible in the Prefect UI.
    """

    def __init__(self, stage: str, min_interval: float = 5.0) -> None:
        self.stage = stage
        self.min_interval = min_interval
        self._last = 0.0
        self._artifact: UUID | None = None
        try:
            self._log: logging.Logger | logging.LoggerAdapter[logging.Logger] = get_run_logger()
        except Exception:  # outside a run context (task.fn() in unit tests)
            self._log = logging.getLogger(f"medseg.{stage}")

    def __call__(self, label: str, done: int, total: int) -> None:
        now = time.monotonic()
        finished = total > 0 and done >= total
        if not finished and now - self._last < self.min_interval:
            return
        self._last = now
        pct = 100.0 * done / total if total else 100.0
        self._log.info("%s: %s %d/%d (%.0f%%)", self.stage, label, done, total, pct)
        try:
            if self._artifact is None:
                created = create_progress_artifact(pct, description=f"{self.stage}: {label}")
                self._artifact = created if isinstance(created, UUID) else None
            else:
                update_progress_artifact(self._artifact, pct, description=f"{self.stage}: {label} {done}/{total}")
        except Exception:  # artifacts are best effort (no API / no run context)
            pass
