"""An exclusive lock on a file, held while one process works in a folder (one writer at a time)."""

from __future__ import annotations

import fcntl
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

log = logging.getLogger(__name__)


@contextmanager
def exclusive_lock(path: Path, waiting: str) -> Iterator[None]:
    """Exclusive lock on ``path`` (created if missing; released by the OS even if the process is
    killed). Logs ``waiting`` once when another process holds it, then waits for it."""
    with open(path, "a+") as fh:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info("%s", waiting)
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
