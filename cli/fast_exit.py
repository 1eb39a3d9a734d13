"""How a medseg command-line process ends: without the interpreter's final pass of the cyclic GC.

At exit CPython collects garbage while it tears the modules down, walking every object still alive:
~0.1 s once ``distributed`` is imported (0.01 s without that walk), paid by every ``medseg`` command.
:func:`skip_final_gc` freezes the surviving objects just before that. Objects are still released by
reference counting (files closed, SQLite connections closed); only unreachable reference cycles are
left to the operating system. For entry points only (the CLI, bench programs): a library call must
not change how its host process ends.
"""

from __future__ import annotations

import atexit
import gc


def skip_final_gc() -> None:
    """Freeze every object at exit, after the exit handlers registered later than this call have run."""
    atexit.register(gc.freeze)
