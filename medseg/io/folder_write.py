"""Write a folder that appears whole or not at all: built under a hidden sibling name, renamed into place."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def folder_written_whole(root: Path) -> Iterator[Path]:
    """Yield a hidden temporary sibling of ``root`` to fill; on a normal exit it replaces ``root``.

    On an exception the temporary folder is removed and ``root`` is left as it was.
    """
    root = Path(root)
    tmp = root.with_name(f".{root.name}.partial-{uuid.uuid4().hex[:8]}")
    try:
        tmp.mkdir(parents=True)
        yield tmp
        if root.exists():
            shutil.rmtree(root)
        tmp.rename(root)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
