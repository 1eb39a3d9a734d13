"""Rank entry point for the killed-rank test: :mod:`medseg.cli.train_rank` whose rank 1 kills itself
(SIGKILL) just before step ``KILL_STEP`` of epoch ``KILL_EPOCH`` on torchrun's first attempt only, after
writing ``KILL_MARKER``. The restarted ranks then resume from the run's ``last.pt``.

Run by torchrun (a script, so the three settings come from the environment of the test).
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import Any

from medseg.cli import train_rank
from medseg.training import steppers

KILL_EPOCH = int(os.environ["KILL_EPOCH"])
KILL_STEP = int(os.environ["KILL_STEP"])
KILL_MARKER = Path(os.environ["KILL_MARKER"])
_train_step = steppers.CnnStepper.train_step


def train_step(self: steppers.CnnStepper, batch: dict[str, Any], epoch: int, iteration: int) -> dict[str, float]:
    first_attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT") == "0"
    if self.ctx.rank == 1 and first_attempt and (epoch, iteration) == (KILL_EPOCH, KILL_STEP):
        KILL_MARKER.write_text(f"rank 1 killed before epoch {epoch} step {iteration}\n")
        os.kill(os.getpid(), signal.SIGKILL)
    return _train_step(self, batch, epoch, iteration)


steppers.CnnStepper.train_step = train_step  # type: ignore[method-assign]

if __name__ == "__main__":
    sys.exit(train_rank.main())
