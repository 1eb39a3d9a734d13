"""medseg.preprocess.fanout: one function per item, in item order, one failure never stops the others."""

from __future__ import annotations

from medseg.preprocess.fanout import Outcome, fan_out


def _inverse(x: int, scale: float = 1.0) -> float:
    return scale / x


def test_sequential_fan_out_collects_values_errors_and_progress() -> None:
    progress: list[tuple[int, int]] = []
    seen: list[tuple[int, int, int]] = []
    out = fan_out(
        _inverse, [1, 0, 4], None, progress=lambda d, t: progress.append((d, t)),
        on_outcome=lambda o, d, t: seen.append((o.item, d, t)), scale=2.0,
    )
    assert out == [Outcome(1, 2.0, None), Outcome(0, None, "ZeroDivisionError: float division by zero"),
                   Outcome(4, 0.5, None)]
    assert progress == [(1, 3), (2, 3), (3, 3)]
    assert seen == [(1, 1, 3), (0, 2, 3), (4, 3, 3)]
    assert fan_out(_inverse, [], None) == []
