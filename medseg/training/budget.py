"""The training budget and its time cap: why a run stopped, and the warning a capped run carries.

A run trains ``max_epochs × iterations_per_epoch`` iterations (:data:`StopReason.ITERATION_BUDGET`).
``train.max_minutes`` is a safety cap: a run it stops (:data:`StopReason.TIME_CAP`) carries
:func:`time_cap_warning` into its bundle, stage record, status, artifacts and report, and is not
promoted over a champion that completed its budget. Reads bundle metadata only (no torch), so that
``medseg status`` stays light.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any


class StopReason(StrEnum):
    """Why a training run ended (``training.stopped_reason`` of a bundle)."""

    ITERATION_BUDGET = "iteration_budget"  # all max_epochs × iterations_per_epoch iterations ran
    TIME_CAP = "time_cap"  # train.max_minutes fired first: fewer iterations than configured


#: ``stopped_reason`` values of runs that ended on the wall clock ("time_budget": bundles from before the cap).
_CAPPED_REASONS = (StopReason.TIME_CAP.value, "time_budget")
_WARNING_START = "stopped by the time cap"


def time_cap_warning(done: int, planned: int, max_minutes: float) -> str:
    """The warning of a run the cap stopped after ``done`` of ``planned`` iterations."""
    return (f"{_WARNING_START} (train.max_minutes={max_minutes:g}) after {done} of {planned} iterations: "
            "the model trained less than configured; raise the cap or lower the iteration budget")


def time_capped(meta: dict[str, Any]) -> bool:
    """Whether the bundle with metadata ``meta`` was stopped by the time cap before its iteration budget."""
    return (meta.get("training") or {}).get("stopped_reason") in _CAPPED_REASONS


def capped_warning(meta: dict[str, Any]) -> str | None:
    """The time-cap warning of a capped bundle (from its metadata), else None."""
    if not time_capped(meta):
        return None
    training = meta.get("training") or {}
    for warning in training.get("warnings") or []:
        if str(warning).startswith(_WARNING_START):
            return str(warning)
    return f"{_WARNING_START} after {training.get('iterations', '?')} iterations"
