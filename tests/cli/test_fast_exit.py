"""medseg.cli.fast_exit: a command-line process freezes its objects just before the interpreter finalizes."""

from __future__ import annotations

import subprocess
import sys

SCRIPT = """
import atexit, gc
from medseg.cli.fast_exit import skip_final_gc
atexit.register(lambda: print("at the end:", gc.get_freeze_count() > 0, flush=True))  # runs after the freeze
skip_final_gc()
atexit.register(lambda: print("before:", gc.get_freeze_count() > 0, flush=True))  # registered later: runs first
print("running:", gc.get_freeze_count() > 0, flush=True)
"""


def test_objects_are_frozen_only_after_later_exit_handlers() -> None:
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.splitlines() == ["running: False", "before: False", "at the end: True"]
