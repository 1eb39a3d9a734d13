"""Progress reporting from inside a task: throttled log lines with rate and ETA, a Prefect progress
artifact, and a terminal bar when the console is a terminal (:mod:`tasks.terminal_bar`)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from uuid import UUID

from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.logging import get_run_logger

from medseg.tasks.common import in_prefect_run
from medseg.tasks.terminal_bar import TerminalBars, terminal_bars


def _duration(seconds: float) -> str:
    """``m:ss``, or ``h:mm:ss`` from an hour on."""
    total = int(round(seconds))
    hours, minutes = divmod(total // 60, 60)
    return f"{hours}:{minutes:02d}:{total % 60:02d}" if hours else f"{minutes}:{total % 60:02d}"


class TaskProgress:
    """Callable ``(label, done, total)`` handed to medseg stage functions.

    Logs at most every ``min_interval`` seconds (and at completion) the count, the rate and the ETA
    (measured since the first call with this ``total``), keeps one progress artifact per task run
    up to date, so long stages are visible in the Prefect UI, and draws the terminal bar.
    """

    def __init__(self, stage: str, min_interval: float = 5.0, bars: TerminalBars | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.stage = stage
        self.min_interval = min_interval
        self.clock = clock
        self.bars = bars if bars is not None else terminal_bars()
        self._last = float("-inf")
        self._since: tuple[float, int, int] | None = None  # (time, done, total) where the rate is measured from
        self._artifact: UUID | None = None
        try:
            self._log: logging.Logger | logging.LoggerAdapter[logging.Logger] = get_run_logger()
        except Exception:  # outside a run context (task.fn() in unit tests)
            self._log = logging.getLogger(f"medseg.{stage}")

    def rate_and_eta(self, done: int, total: int) -> tuple[float | None, float | None]:
        """Items per second since the rate's start, and seconds left at that rate (None before any progress)."""
        now = self.clock()
        if self._since is None or self._since[2] != total or done < self._since[1]:
            self._since = (now, done, total)
        start, start_done, _ = self._since
        if done <= start_done or now <= start:
            return None, None
        rate = (done - start_done) / (now - start)
        return rate, max(total - done, 0) / rate

    def __call__(self, label: str, done: int, total: int) -> None:
        rate, eta = self.rate_and_eta(done, total)
        if self.bars is not None:
            self.bars.update(self.stage, f"{self.stage}: {label}", done, total)
        now = self.clock()
        finished = total > 0 and done >= total
        if not finished and now - self._last < self.min_interval:
            return
        self._last = now
        pct = 100.0 * done / total if total else 100.0
        text = f"{label} {done}/{total} ({pct:.0f}%)"
        if rate is not None and eta is not None:
            text += f", {rate:.2f}/s, " + ("done" if finished else f"ETA {_duration(eta)}")
        self._log.info("%s: %s", self.stage, text)
        if not in_prefect_run():
            return  # no run to attach an artifact to (task.fn() in unit tests, library use)
        try:
            if self._artifact is None:
                created = create_progress_artifact(pct, description=f"{self.stage}: {text}")
                self._artifact = created if isinstance(created, UUID) else None
            else:
                update_progress_artifact(self._artifact, pct, description=f"{self.stage}: {text}")
        except Exception:  # artifacts are best effort (no API / no run context)
            pass
