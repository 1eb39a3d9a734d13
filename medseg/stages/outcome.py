"""The small, serialisable result every stage returns."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, Field

#: progress(stage_label, done, total)
ProgressFn = Callable[[str, int, int], None]


class StageOutcome(BaseModel):
    stage: str
    skipped: bool = False
    reason: str = ""
    seconds: float = 0.0
    stats: dict[str, Any] = Field(default_factory=dict)
    outputs: list[str] = Field(default_factory=list)

    def scalar_stats(self) -> dict[str, int | float | str]:
        """The stats that fit on one line (numbers and short strings)."""
        return {k: v for k, v in self.stats.items() if isinstance(v, int | float | str) and len(str(v)) <= 40}

    def brief(self) -> dict[str, Any]:
        """JSON-able summary for flow results and terminal tables (no large stats)."""
        return {**self.model_dump(mode="json", exclude={"stats"}), "stats": self.scalar_stats(),
                "headline": self.headline()}

    def headline(self) -> str:
        """One line for logs and the terminal."""
        if self.skipped:
            return f"{self.stage}: skipped ({self.reason})"
        shown = ", ".join(f"{k}={v}" for k, v in self.scalar_stats().items())
        return f"{self.stage}: done in {self.seconds:.1f}s ({shown})"


def event_progress(progress: ProgressFn | None, label: str) -> Callable[[dict[str, Any]], None]:
    """Adapt the event dicts of training/inference loops to ``progress(label, done, total)``.

    Epoch events (``epoch``/``max_epochs``) and case events (``done``/``total``) are forwarded;
    per-iteration events are dropped (too frequent for logs and artifacts).
    """

    def on_event(event: dict[str, Any]) -> None:
        if progress is None:
            return
        kind = event.get("event")
        if kind == "epoch":
            loss = event.get("loss")
            text = f"{label} epochs" + (f" (loss {loss:.3f})" if isinstance(loss, float) else "")
            progress(text, int(event.get("epoch", 0)) + 1, int(event.get("max_epochs", 0)))
        elif kind == "case":
            progress(f"{label} cases", int(event.get("done", 0)), int(event.get("total", 0)))

    return on_event
