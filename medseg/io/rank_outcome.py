"""The hand-over file of a data-parallel train stage: rank 0's stage outcome for the launching process.

``outcome.json`` = ``{"schema_version": 1, "outcome": {...}}`` where ``outcome`` is a
:class:`~medseg.stages.outcome.StageOutcome` as JSON (``model_dump(mode="json")``). Rank 0 writes it
atomically when the stage has finished (:mod:`medseg.cli.train_rank`); the process that started the
ranks reads it (:mod:`medseg.stages.train_distributed`). A missing file means the ranks failed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from medseg.io.json_file import SCHEMA_FIELD, read_versioned_json, write_json

RANK_OUTCOME_SCHEMA = 1


def write_rank_outcome(path: Path, outcome: dict[str, Any]) -> Path:
    """Atomically write ``outcome`` (a StageOutcome as a JSON dict) to ``path``."""
    return write_json(path, {SCHEMA_FIELD: RANK_OUTCOME_SCHEMA, "outcome": outcome})


def read_rank_outcome(path: Path) -> dict[str, Any]:
    """The outcome dict written by :func:`write_rank_outcome` (FileNotFoundError when rank 0 wrote none)."""
    data = read_versioned_json(path, RANK_OUTCOME_SCHEMA, "rank outcome", "the training processes ended without one")
    return dict(data["outcome"])
