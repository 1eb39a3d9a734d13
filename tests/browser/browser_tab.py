"""A browser page of the browser tests with what went wrong on it (``from browser_tab import Tab``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Tab:
    """A browser page with the console errors and uncaught exceptions it has seen so far."""

    page: Any
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
