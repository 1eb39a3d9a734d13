"""medseg.runtime.locks: one holder of a folder's lock file at a time."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from medseg.runtime.locks import exclusive_lock

_TRY = """
import fcntl, sys
with open(sys.argv[1], "a+") as fh:
    try:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        print("held")
    else:
        print("free")
"""


def _state(path: Path) -> str:
    return subprocess.run([sys.executable, "-c", _TRY, str(path)], capture_output=True, text=True,
                          check=True, timeout=60).stdout.strip()


def test_the_lock_is_held_inside_the_block_only(tmp_path: Path) -> None:
    path = tmp_path / ".ingest.lock"
    with exclusive_lock(path, "waiting"):
        assert path.exists() and _state(path) == "held"
    assert _state(path) == "free"
