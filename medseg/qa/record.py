"""The QA artifact ``reports/<run_id>/qa.json``: per case, a score that says "look at this", and why.

Every signal measured on a case (:class:`Signal`) is scored against its threshold: score 1.0 = the
threshold, so a case is **flagged** when any signal scores 1.0 or more, and the case's score is its
highest signal score (capped at :data:`MAX_SCORE`). Cases are ranked flagged first, then by score.
See :mod:`medseg.qa.signals` for the signals and docs/ARCHITECTURE.md (prediction QA) for the contract.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from medseg.io.json_file import read_versioned_json, write_text_atomic
from medseg.qa.volumes import VolumeRange

QA_SCHEMA_VERSION = 1
QA_FILE = "qa.json"
#: the highest score (an empty mask, a class the training labels never had, a case that could not be read)
MAX_SCORE = 10.0


class SignalKind(StrEnum):
    """What a signal measures."""

    VOLUME = "volume"  # a class's (or the whole foreground's) predicted volume vs the training label volumes
    CONFIDENCE = "confidence"  # share of predicted foreground with a low winning probability
    AGREEMENT = "agreement"  # Dice between two models' predictions of the case
    UNREADABLE = "unreadable"  # the prediction could not be read


class Signal(BaseModel):
    """One measurement of one case, scored against its threshold."""

    kind: SignalKind
    model: str = Field(description="the model it was measured on, or 'cnn vs gan' for an agreement")
    subject: str = Field("", description="the class (volume signals), else empty")
    value: float = Field(description="ml (volume), share 0-1 (confidence), Dice (agreement)")
    score: float = Field(description="1.0 = at the threshold; >= 1 flags the case (capped at MAX_SCORE)")
    reason: str = Field(description="plain-language finding, e.g. 'cnn: organ volume 412 ml > 3x training max 96 ml'")

    @property
    def flagged(self) -> bool:
        return self.score >= 1.0


class CaseQA(BaseModel):
    """QA of one case over every model that predicted it."""

    case_id: str
    score: float = Field(description="the highest signal score (0 = nothing measured)")
    flagged: bool = Field(description="some signal reached its threshold (score >= 1)")
    reasons: list[str] = Field(default_factory=list, description="the flagged signals' reasons, highest first")
    signals: list[Signal] = Field(default_factory=list, description="every signal measured, highest score first")
    volumes_ml: dict[str, dict[str, float]] = Field(default_factory=dict, description="model -> class -> ml")
    overlay: str | None = Field(None, description="overlay PNG, relative to the folder of qa.json")


class QAReport(BaseModel):
    """``qa.json``: the ranked cases of one run's predictions."""

    schema_version: int = QA_SCHEMA_VERSION
    run_id: str
    models: dict[str, str] = Field(description="model name -> prediction folder")
    thresholds: dict[str, Any] = Field(description="the qa config section the scores used")
    training_volumes: dict[str, VolumeRange] = Field(default_factory=dict, description="class -> training range")
    notes: list[str] = Field(default_factory=list, description="signals that could not be measured, and why")
    cases: list[CaseQA] = Field(default_factory=list, description="flagged first, then by score")

    @property
    def flagged(self) -> list[CaseQA]:
        return [c for c in self.cases if c.flagged]

    def save(self, path: Path) -> Path:
        write_text_atomic(path, self.model_dump_json(indent=2), mkdir=True)
        return Path(path)

    @classmethod
    def load(cls, path: Path) -> QAReport:
        return cls.model_validate(read_versioned_json(path, QA_SCHEMA_VERSION, "QA report",
                                                      "run `medseg infer` (or the report stage) again"))


def ranked(cases: list[CaseQA]) -> list[CaseQA]:
    """Flagged cases first, then by descending score, then by case id (a stable order)."""
    return sorted(cases, key=lambda c: (not c.flagged, -c.score, c.case_id))
