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

    @property
    def warnings(self) -> list[str]:
        """Warnings the stage recorded (e.g. training stopped by the time cap)."""
        return [str(w) for w in self.stats.get("warnings") or []]

    def scalar_stats(self) -> dict[str, int | float | str]:
        """The stats that fit on one line (numbers and short strings)."""
        return {k: v for k, v in self.stats.items() if isinstance(v, int | float | str) and len(str(v)) <= 40}

    def brief(self) -> dict[str, Any]:
        """JSON-able summary for flow results and terminal tables (no large stats)."""
        return {**self.model_dump(mode="json", exclude={"stats"}), "stats": self.scalar_stats(),
                "warnings": self.warnings, "headline": self.headline()}

    def headline(self) -> str:
        """One line for logs and the terminal."""
        if self.skipped:
            return f"{self.stage}: skipped ({self.reason})"
        shown = ", ".join(f"{k}={v}" for k, v in self.scalar_stats().items())
        warned = "".join(f"; WARNING: {w}" for w in self.warnings)
        return f"{self.stage}: done in {self.seconds:.1f}s ({shown}){warned}"


def event_progress(progress: ProgressFn | None, label: str) -> Callable[[dict[str, Any]], None]:
    """Adapt the event dicts of training/inference loops to ``progress(label, done, total)``.

    Training events (``iteration`` every few iterations, ``epoch`` after each epoch) count global
    iterations out of the run's iteration budget, with the loss (and validation Dice) in the label;
    case events (``done``/``total``) count cases. The receiver throttles and adds rate and ETA.
    """

    def on_event(event: dict[str, Any]) -> None:
        if progress is None:
            return
        kind = event.get("event")
        if kind in ("iteration", "epoch") and "total_iterations" in event:
            loss = event.get("loss")
            # k-fold cross-validation: the fold is named and iterations count over all folds
            fold = f"fold {int(event['fold']) + 1}/{event.get('folds', '?')}, " if "fold" in event else ""
            text = f"{label} iterations, {fold}epoch {int(event.get('epoch', 0)) + 1}/{event.get('max_epochs', '?')}"
            if isinstance(loss, float):
                text += f", loss {loss:.3f}"
            dice = event.get("val_mean_dice")
            if isinstance(dice, float):
                text += f", val Dice {dice:.3f}"
            progress(text, int(event["global_iteration"]), int(event["total_iterations"]))
        elif kind == "case":
            progress(f"{label} cases", int(event.get("done", 0)), int(event.get("total", 0)))

    return on_event
