"""Live progress: training reports every few iterations with rate and ETA, on logs and a terminal bar."""

from __future__ import annotations

import io
import logging
from pathlib import Path
from typing import Any

import phantom_data
import pytest
import torch
from rich.console import Console
from rich.theme import Theme

from medseg.stages.outcome import event_progress
from medseg.tasks.progress import TaskProgress
from medseg.tasks.terminal_bar import TerminalBars
from medseg.training.train import train_model


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_task_progress_logs_rate_and_eta(caplog: pytest.LogCaptureFixture) -> None:
    clock = _Clock()
    progress = TaskProgress("train-cnn", min_interval=5.0, clock=clock)
    progress.bars = None
    with caplog.at_level(logging.INFO, logger="medseg.train-cnn"):
        progress("cnn iterations", 0, 200)
        clock.now += 10.0
        progress("cnn iterations", 20, 200)  # 2 it/s, 180 left -> 90 s
        clock.now += 1.0
        progress("cnn iterations", 22, 200)  # throttled: less than 5 s since the last line
        clock.now += 89.0
        progress("cnn iterations", 200, 200)  # completion is always logged
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0] == "train-cnn: cnn iterations 0/200 (0%)"
    assert lines[1] == "train-cnn: cnn iterations 20/200 (10%), 2.00/s, ETA 1:30"
    assert len(lines) == 3 and lines[2] == "train-cnn: cnn iterations 200/200 (100%), 2.00/s, done"
    assert progress.rate_and_eta(5, 10) == (None, None)  # a new total (next phase) restarts the rate


def test_terminal_bars_draw_counts_rate_and_eta_and_stop_when_done() -> None:
    """On a console themed like Prefect's log console (its own styles only, none of rich's bar styles)."""
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=140, color_system=None,
                      theme=Theme({"log.info_level": "cyan"}, inherit=False))
    bars = TerminalBars(console)
    bars.update("infer-cnn", "infer-cnn: cnn cases", 0, 4)
    bars.update("infer-cnn", "infer-cnn: cnn cases", 2, 4)
    assert bars._progress is not None
    bars.update("infer-cnn", "infer-cnn: cnn cases", 4, 4)
    assert bars._progress is None  # every bar complete: the live display is closed
    text = out.getvalue()
    assert bars.enabled and "infer-cnn: cnn cases" in text and "4/4" in text and "ETA" in text


def test_a_failing_terminal_bar_is_switched_off_and_the_stage_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    class Broken(io.StringIO):
        def write(self, text: str) -> int:
            raise OSError("terminal gone")

    bars = TerminalBars(Console(file=Broken(), force_terminal=True))
    with caplog.at_level(logging.WARNING, logger="tasks.terminal_bar"):
        bars.update("train-cnn", "train-cnn: iterations", 1, 10)
        bars.update("train-cnn", "train-cnn: iterations", 2, 10)
    assert not bars.enabled and "terminal progress bars switched off: terminal gone" in caplog.text


def test_training_reports_every_few_iterations_with_rate_and_eta(tmp_path: Path) -> None:
    torch.set_num_threads(2)
    ws = phantom_data.write_phantom_workspace(tmp_path / "ws")
    cfg = phantom_data.tiny_config(max_epochs=2, iterations_per_epoch=5, val_every=2)
    events: list[dict[str, Any]] = []
    calls: list[tuple[str, int, int]] = []
    forward = event_progress(lambda label, done, total: calls.append((label, done, total)), "cnn")

    def on_event(event: dict[str, Any]) -> None:
        events.append(event)
        forward(event)

    train_model(ws, cfg, "cnn", progress=on_event)
    iterations = [e for e in events if e["event"] == "iteration"]
    assert [e["global_iteration"] for e in iterations] == list(range(1, 11))  # every max(1, iterations_per_epoch // 10)
    assert all(e["total_iterations"] == 10 and e["iterations_per_second"] > 0 for e in iterations)
    assert iterations[-1]["eta_seconds"] == 0 and iterations[0]["eta_seconds"] > 0
    # forwarded in iterations out of the budget, with loss (and validation Dice after a validation)
    assert calls[0][0].startswith("cnn iterations, epoch 1/2, loss ") and calls[0][1:] == (1, 10)
    assert calls[-1][1:] == (10, 10) and "val Dice" in calls[-1][0]
