"""Progress bars on the terminal (rich) for the stages a command runs, with counts, rate and ETA.

Shown only when the console is a terminal: under a Prefect worker, in CI or with output piped to a
file, nothing is drawn (the stages still log and update their Prefect progress artifacts). The bars
share the console of Prefect's console log handler when there is one, so that run log lines print
above the bars instead of through them.
"""

from __future__ import annotations

import contextlib
import logging
import threading

from rich.console import Console
from rich.default_styles import DEFAULT_STYLES
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text
from rich.theme import Theme

log = logging.getLogger(__name__)


class RateColumn(ProgressColumn):
    """Items per second (iterations, cases, files), from rich's moving estimate."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text("" if speed is None else f"{speed:.2f}/s", style="progress.data.speed")


#: rich's styles that the progress columns use (a themed console without them cannot draw the bars).
PROGRESS_THEME = Theme({k: v for k, v in DEFAULT_STYLES.items() if k.startswith(("bar.", "progress."))})


def _log_console() -> Console | None:
    """The rich console of Prefect's console handler (root or ``prefect`` logger), if installed."""
    for name in (None, "prefect"):
        for handler in logging.getLogger(name).handlers:
            console = getattr(handler, "console", None)
            if isinstance(console, Console):
                return console
    return None


class TerminalBars:
    """One rich progress display with a bar per stage key; it stops once every bar is complete."""

    def __init__(self, console: Console) -> None:
        self.console = console
        console.push_theme(PROGRESS_THEME)  # on top of the console's own theme (Prefect's has no bar styles)
        self.enabled = True
        self._lock = threading.Lock()
        self._progress: Progress | None = None
        self._tasks: dict[str, TaskID] = {}

    def update(self, key: str, description: str, done: int, total: int) -> None:
        """Show ``done`` of ``total`` for ``key``; a new ``total`` (next phase) restarts its rate."""
        with self._lock:
            if not self.enabled:
                return
            try:
                self._update(key, description, done, total)
            except Exception as exc:  # noqa: BLE001 - a display problem must not fail the stage
                self.enabled = False
                log.warning("terminal progress bars switched off: %s", exc)
                with contextlib.suppress(Exception):
                    if self._progress is not None:
                        self._progress.stop()

    def _update(self, key: str, description: str, done: int, total: int) -> None:
        progress = self._progress
        if progress is None:
            progress = self._progress = Progress(
                TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), RateColumn(),
                TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                console=self.console, transient=False, redirect_stdout=False, redirect_stderr=False,
            )
            progress.start()
            self._tasks = {}
        task_id = self._tasks.get(key)
        if task_id is not None and next(t.total for t in progress.tasks if t.id == task_id) != total:
            progress.remove_task(task_id)
            task_id = None
        if task_id is None:
            task_id = self._tasks[key] = progress.add_task(description, total=total, completed=done)
        progress.update(task_id, description=description, completed=done, total=total)
        progress.refresh()  # draw now: an error surfaces here, not in rich's refresh thread
        if all(t.finished for t in progress.tasks):
            progress.stop()
            self._progress = None


_shared: list[TerminalBars | None] = []  # [] = not decided yet
_shared_lock = threading.Lock()


def terminal_bars() -> TerminalBars | None:
    """The process's bars when its console is a terminal, else None (workers, CI, piped output)."""
    with _shared_lock:
        if not _shared:
            console = _log_console() or Console(stderr=True)
            _shared.append(TerminalBars(console) if console.is_terminal else None)
        return _shared[0]
