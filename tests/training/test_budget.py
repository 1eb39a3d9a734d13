"""medseg.training.budget: which bundles the time cap stopped, and the warning they carry."""

from __future__ import annotations

from medseg.training.budget import StopReason, capped_warning, time_cap_warning, time_capped


def test_time_capped_reads_the_stopped_reason() -> None:
    assert time_capped({"training": {"stopped_reason": StopReason.TIME_CAP.value}})
    assert time_capped({"training": {"stopped_reason": "time_budget"}})  # bundles from before the cap
    assert not time_capped({"training": {"stopped_reason": StopReason.ITERATION_BUDGET.value}})
    assert not time_capped({})


def test_capped_warning_is_the_recorded_one_or_a_fallback() -> None:
    warning = time_cap_warning(30, 100, 2.5)
    assert "30 of 100" in warning and "max_minutes=2.5" in warning
    meta = {"training": {"stopped_reason": "time_cap", "iterations": 30, "warnings": ["other", warning]}}
    assert capped_warning(meta) == warning
    fallback = capped_warning({"training": {"stopped_reason": "time_cap", "iterations": 7}})
    assert fallback is not None and "after 7 iterations" in fallback
    assert capped_warning({"training": {"stopped_reason": "iteration_budget", "warnings": [warning]}}) is None
