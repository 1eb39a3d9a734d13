"""Scratch lists on disk: long item lists (a scan's file list) written and read back in pickled
chunks, so a run's memory stays flat whatever their length."""

from __future__ import annotations

import pickle
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

#: items per pickled chunk
SCRATCH_CHUNK = 4096


def write_scratch(path: Path, items: Iterable[Any], chunk: int = SCRATCH_CHUNK) -> int:
    """Write ``items`` to ``path`` (replaced) in pickled chunks of ``chunk`` items; return their count."""
    n = 0
    with open(path, "wb") as fh:
        batch: list[Any] = []
        for item in items:
            batch.append(item)
            n += 1
            if len(batch) >= chunk:
                pickle.dump(batch, fh, protocol=pickle.HIGHEST_PROTOCOL)
                batch = []
        if batch:
            pickle.dump(batch, fh, protocol=pickle.HIGHEST_PROTOCOL)
    return n


def read_scratch(path: Path) -> Iterator[Any]:
    """The items :func:`write_scratch` wrote to ``path``, in order, one chunk in memory at a time."""
    with open(path, "rb") as fh:
        while True:
            try:
                chunk = pickle.load(fh)
            except EOFError:
                return
            yield from chunk
