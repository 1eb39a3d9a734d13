"""Identity of an ingested volume store (a cheap content hash) and per-case seeds."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from medseg.io.volume_store import read_meta


def source_hash(volume_path: Path) -> str:
    """Short hash of a completed store: its ``medseg`` attributes and every file's relative path and size.

    Chunk files are compressed, so their sizes change with the voxel content; the store is never
    read in full. A rewrite of identical content (same attrs, same bytes) keeps the hash.
    """
    path = Path(volume_path)
    meta = read_meta(path)
    h = hashlib.sha256(json.dumps(meta, sort_keys=True, default=str).encode())
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        h.update(f"{f.relative_to(path).as_posix()}:{f.stat().st_size}\n".encode())
    return h.hexdigest()[:16]


def case_seed(case_id: str, salt: str = "") -> int:
    """Deterministic 32-bit RNG seed for one case (identical in every worker process)."""
    return int.from_bytes(hashlib.sha256(f"{salt}:{case_id}".encode()).digest()[:4], "big")
