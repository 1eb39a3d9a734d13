"""Write a folder that appears whole or not at all: built under a hidden sibling name, renamed into place."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def replace_dir(new: Path, target: Path) -> None:
    """Put the folder ``new`` at ``target``: an existing ``target`` is renamed aside first and removed after,
    so ``target`` is the old folder or the new one, and only between two renames neither."""
    if target.exists():
        old = target.with_name(f".{target.name}.old-{uuid.uuid4().hex[:8]}")
        os.replace(target, old)
        os.replace(new, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(new, target)


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
        replace_dir(tmp, root)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
