"""Deterministic train/val/test split keyed on case ids.

Each case's assignment depends only on its id and the seed, so cases arriving later never move
existing cases between sets (the test set stays held out across nightly runs).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from pydantic import BaseModel

from medseg.config import SplitConfig
from medseg.io.json_file import read_json, write_text_atomic


class Splits(BaseModel):
    train: list[str]
    val: list[str]
    test: list[str]
    seed: int | None = None
    test_fraction: float | None = None
    val_fraction: float | None = None

    def made_with(self, cfg: SplitConfig, seed: int) -> bool:
        return (self.seed, self.test_fraction, self.val_fraction) == (seed, cfg.test_fraction, cfg.val_fraction)

    def save(self, path: Path) -> Path:
        write_text_atomic(path, self.model_dump_json(indent=2), mkdir=True)
        return path

    @classmethod
    def load(cls, path: Path) -> Splits:
        return cls.model_validate(read_json(path))


def _unit(case_id: str, seed: int, salt: str) -> float:
    digest = hashlib.sha256(f"{seed}:{salt}:{case_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def make_splits(case_ids: list[str], cfg: SplitConfig, seed: int, previous: Splits | None = None) -> Splits:
    """Assign every case to train, val or test.

    Without ``previous``, cases are ranked by a seeded hash of their id and the first
    ``round(n * test_fraction)`` go to test, then ``round(rest * val_fraction)`` to val, so set sizes
    are exact (at least one case each when the fraction is > 0 and there are >= 3 cases).
    With a ``previous`` split made with the same seed and fractions, cases already assigned keep
    their set (the test set stays held out across nightly runs) and only new cases are placed, by
    the same hash against the fractions.
    """
    ids = sorted(set(case_ids))
    if previous is not None and previous.made_with(cfg, seed):
        return _extend(ids, previous, cfg, seed)
    by_test = sorted(ids, key=lambda c: _unit(c, seed, "test"))
    n_test = _count(len(ids), cfg.test_fraction)
    test, rest = by_test[:n_test], by_test[n_test:]
    by_val = sorted(rest, key=lambda c: _unit(c, seed, "val"))
    n_val = _count(len(rest), cfg.val_fraction, minimum_total=2)
    val, train = by_val[:n_val], by_val[n_val:]
    return Splits(train=sorted(train), val=sorted(val), test=sorted(test), seed=seed,
                  test_fraction=cfg.test_fraction, val_fraction=cfg.val_fraction)


def _count(n: int, fraction: float, minimum_total: int = 3) -> int:
    if fraction <= 0 or n == 0:
        return 0
    count = round(n * fraction)
    if count == 0 and n >= minimum_total:
        count = 1
    return min(count, n - 1) if n > 1 else 0


def _extend(ids: list[str], previous: Splits, cfg: SplitConfig, seed: int) -> Splits:
    keep = set(ids)
    train = [c for c in previous.train if c in keep]
    val = [c for c in previous.val if c in keep]
    test = [c for c in previous.test if c in keep]
    known = set(train) | set(val) | set(test)
    for c in ids:
        if c in known:
            continue
        if _unit(c, seed, "test") < cfg.test_fraction:
            test.append(c)
        elif _unit(c, seed, "val") < cfg.val_fraction:
            val.append(c)
        else:
            train.append(c)
    return Splits(train=sorted(train), val=sorted(val), test=sorted(test), seed=seed,
                  test_fraction=cfg.test_fraction, val_fraction=cfg.val_fraction)


class Fold(BaseModel):
    """One fold of k-fold cross-validation: train on ``train``, validate on the held-out ``val``."""

    index: int
    train: list[str]
    val: list[str]


def make_folds(case_ids: list[str], k: int, seed: int) -> list[Fold]:
    """Split ``case_ids`` (the non-test cases) into ``k`` folds by case, as nnU-Net's 5-fold split does.

    Cases are ranked by a seeded hash of their id and dealt round-robin, so fold sizes differ by at
    most one, the same ids and seed always give the same folds, and every case is held out (``val``)
    in exactly one fold: the ``val`` lists partition ``case_ids``.

    Raises:
        ValueError: ``k < 2`` or fewer cases than folds.
    """
    ids = sorted(set(case_ids))
    if k < 2:
        raise ValueError(f"k-fold cross-validation needs at least 2 folds, got train.folds={k}")
    if len(ids) < k:
        raise ValueError(
            f"train.folds={k} needs at least {k} non-test cases, the split has {len(ids)}: "
            "lower train.folds or split.test_fraction, or ingest more cases"
        )
    ranked = sorted(ids, key=lambda c: _unit(c, seed, "fold"))
    held = [sorted(ranked[i::k]) for i in range(k)]
    return [Fold(index=i, train=sorted(set(ids) - set(held[i])), val=held[i]) for i in range(k)]
