"""Stage records: what a stage last produced and from which inputs (for skip-if-unchanged).

A record lives at ``<workspace>/stages/<stage>.json``. A stage computes an *input key* (hash of
everything its output depends on); when the stored record has the same key and its outputs still
exist, the stage is skipped.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from medseg.io.json_file import write_text_atomic
from medseg.workspace import Workspace


class StageRecord(BaseModel):
    stage: str
    input_key: str
    outputs: list[str] = Field(default_factory=list, description="paths that must exist for a skip")
    stats: dict[str, Any] = Field(default_factory=dict)
    started_at: float
    finished_at: float

    @property
    def seconds(self) -> float:
        return self.finished_at - self.started_at


def hash_inputs(*parts: Any) -> str:
    """Stable hash of JSON-serialisable parts (paths become strings)."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def record_path(ws: Workspace, stage: str) -> Path:
    return ws.stages_dir / f"{stage}.json"


def load_record(ws: Workspace, stage: str) -> StageRecord | None:
    path = record_path(ws, stage)
    if not path.is_file():
        return None
    try:
        return StageRecord.model_validate_json(path.read_text())
    except ValueError:
        return None


def up_to_date(ws: Workspace, stage: str, input_key: str) -> StageRecord | None:
    """The stored record if it matches ``input_key`` and all its outputs exist, else None."""
    rec = load_record(ws, stage)
    if rec is None or rec.input_key != input_key:
        return None
    if not all(Path(p).exists() for p in rec.outputs):
        return None
    return rec


def save_record(
    ws: Workspace, stage: str, input_key: str, outputs: Sequence[Path | str], stats: dict[str, Any], started_at: float
) -> StageRecord:
    rec = StageRecord(
        stage=stage,
        input_key=input_key,
        outputs=[str(p) for p in outputs],
        stats=stats,
        started_at=started_at,
        finished_at=time.time(),
    )
    write_text_atomic(record_path(ws, stage), rec.model_dump_json(indent=2), mkdir=True)
    return rec
