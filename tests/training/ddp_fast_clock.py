"""Rank entry point for the time-cap test: :mod:`medseg.cli.train_rank` where the training loop of rank
``FAST_CLOCK_RANK`` measures time with a clock running ``FAST_CLOCK_FACTOR`` times too fast (so by its own
clock ``train.max_minutes`` is spent at once). Only rank 0's clock may decide the time cap.

Run by torchrun (a script, so the settings come from the environment of the test).
"""

from __future__ import annotations

import functools
import os
import sys
import time

from medseg.cli import train_rank
from medseg.training import loop, train

if os.environ["RANK"] == os.environ["FAST_CLOCK_RANK"]:
    factor = float(os.environ["FAST_CLOCK_FACTOR"])
    train.run_loop = functools.partial(loop.run_loop, clock=lambda: time.monotonic() * factor)

if __name__ == "__main__":
    sys.exit(train_rank.main())
