"""Deterministic train/val/test split keyed on case ids.

Each case's assignment depends only on its id and the seed, so cases arriving later never move
existing cases between sets (the test set stays held out across nightly runs).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from pydantic import BaseModel

from medseg.config import SplitConfig


class Splits(BaseModel):
    train: list[str]
    val: list[str]
    test: list[str]

    def save(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.model_dump_json(indent=2))
        return path

    @classmethod
    def load(cls, path: Path) -> Splits:
        return cls.model_validate(json.loads(Path(path).read_text()))


def _unit(case_id: str, seed: int, salt: str) -> float:
    digest = hashlib.sha256(f"{seed}:{salt}:{case_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def make_splits(case_ids: list[str], cfg: SplitConfig, seed: int) -> Splits:
    """Assign every case to train, val or test.

    With at least 3 cases, each set gets at least one case when its fraction is > 0 (the cases
    closest to the threshold are moved), so tiny demo datasets still evaluate.
    """
    ids = sorted(set(case_ids))
    test = [c for c in ids if _unit(c, seed, "test") < cfg.test_fraction]
    rest = [c for c in ids if c not in test]
    if cfg.test_fraction > 0 and not test and len(ids) >= 3:
        test = [min(rest, key=lambda c: _unit(c, seed, "test"))]
        rest = [c for c in rest if c not in test]
    val = [c for c in rest if _unit(c, seed, "val") < cfg.val_fraction]
    if cfg.val_fraction > 0 and not val and len(rest) >= 2:
        val = [min(rest, key=lambda c: _unit(c, seed, "val"))]
    train = [c for c in rest if c not in val]
    return Splits(train=train, val=val, test=test)
