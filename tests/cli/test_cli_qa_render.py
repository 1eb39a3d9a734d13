"""The terminal line `medseg infer` / `run` / `nightly` print after the stage table: how many cases QA flagged."""

from __future__ import annotations

from medseg.cli.common import console
from medseg.cli.render import print_outcomes, print_qa


def test_the_flagged_count_and_where_to_look_are_printed() -> None:
    outcomes = [
        {"stage": "infer-cnn", "seconds": 1.0, "stats": {"predicted": 4}},
        {"stage": "qa", "seconds": 0.2, "stats": {"cases": 4, "flagged": 1}, "outputs": ["/ws/reports/r/qa.md"]},
    ]
    with console.capture() as cap:
        print_outcomes(outcomes)
        print_qa(outcomes)
    text = cap.get()
    assert "flagged=1" in text  # in the stage table
    assert "QA: 1 of 4 predicted case(s) flagged 'look at this' (flagged first: /ws/reports/r/qa.md)" in text
    with console.capture() as cap:
        print_qa([{"stage": "qa", "stats": {"cases": 4, "flagged": 0}, "outputs": ["/ws/reports/r/qa.md"]}])
    assert "QA: 0 of 4 predicted case(s) flagged" in cap.get()
