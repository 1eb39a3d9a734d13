"""A Prefect retry of the train task resumes the interrupted run from its last checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import phantom_data
import pytest
import torch

from medseg.config import MedsegConfig, ModelFamily
from medseg.training import steppers
from medseg.training.train import train_model


class _Crash(OSError):
    """A transient-looking failure (I/O), which the task retry policy retries."""


@pytest.mark.slow
def test_retry_resumes_from_the_last_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, prefect_harness: None
) -> None:
    from prefect import flow

    from medseg.tasks.train import train_task

    torch.set_num_threads(2)
    phantom = phantom_data
    ws = phantom.write_phantom_workspace(tmp_path / "ws")
    cfg: MedsegConfig = phantom.tiny_config(max_epochs=2).model_copy(update={"workspace": ws.root})

    calls: list[tuple[int, int]] = []
    original = steppers.CnnStepper.train_step

    def flaky(self: steppers.CnnStepper, batch: dict[str, Any], epoch: int, iteration: int) -> dict[str, float]:
        calls.append((epoch, iteration))
        if len(calls) == 3:  # first attempt dies at epoch 1, iteration 0 (after the epoch-0 checkpoint)
            raise _Crash("injected I/O failure mid-run")
        return original(self, batch, epoch, iteration)

    monkeypatch.setattr(steppers.CnnStepper, "train_step", flaky)

    @flow(name="train-retry-test")
    def one_training(config: dict[str, Any]) -> dict[str, Any]:
        task = train_task.with_options(retries=1, retry_delay_seconds=0, retry_jitter_factor=0.0)
        return task(MedsegConfig.model_validate(config), ModelFamily.CNN).model_dump(mode="json")

    outcome = one_training(cfg.model_dump(mode="json"))
    stats = outcome["stats"]
    # attempt 1: (0,0) (0,1) (1,0)-crash; attempt 2 resumes at epoch 1: (1,0) (1,1) - epoch 0 is not repeated
    assert calls == [(0, 0), (0, 1), (1, 0), (1, 0), (1, 1)]
    assert stats["resumed_from_epoch"] == 1 and stats["epochs"] == 2 and stats["iterations"] == 4

    # and the resumed weights equal those of an uninterrupted run with the same seed
    monkeypatch.setattr(steppers.CnnStepper, "train_step", original)
    ref_ws = phantom.write_phantom_workspace(tmp_path / "ref")
    reference = train_model(ref_ws, cfg, "cnn")
    resumed = ws.model_family_dir("cnn") / stats["version"]
    a = torch.load(reference.bundle_path / "model.pt", weights_only=True)
    b = torch.load(resumed / "model.pt", weights_only=True)
    assert all(torch.equal(a[k], b[k]) for k in a)
