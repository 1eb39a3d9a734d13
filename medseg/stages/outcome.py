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

    def headline(self) -> str:
        """One line for logs and the terminal."""
        if self.skipped:
            return f"{self.stage}: skipped ({self.reason})"
        shown = ", ".join(f"{k}={v}" for k, v in self.stats.items() if isinstance(v, int | float | str))
        return f"{self.stage}: done in {self.seconds:.1f}s ({shown})"
