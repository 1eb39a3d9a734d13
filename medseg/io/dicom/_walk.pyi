from collections.abc import Set
from typing import Any

def walk(
    buf: bytes,
    pos: int,
    explicit: bool,
    fields: dict[str, Any],
    tags: dict[int, str],
    us_tags: Set[int],
    stop: Set[int],
    only_group: int = -1,
    split: bool = True,
) -> tuple[int, bool]: ...

def dataset(
    buf: bytes,
    pos: int,
    end: int,
    explicit: bool,
    depth: int,
    seqs: Set[int],
    leaves: Set[int],
    us_leaves: Set[int],
) -> tuple[dict[int, Any], int] | None: ...
