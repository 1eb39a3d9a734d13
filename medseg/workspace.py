"""Workspace layout: every path a stage reads or writes (see docs/ARCHITECTURE.md)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Workspace:
    """Paths inside one medseg workspace directory."""

    root: Path

    @classmethod
    def at(cls, root: Path | str) -> Workspace:
        return cls(Path(root).expanduser().resolve())

    def ensure(self) -> Workspace:
        for d in (self.volumes_dir, self.preprocessed_dir, self.models_dir, self.predictions_dir,
                  self.reports_dir, self.stages_dir):
            d.mkdir(parents=True, exist_ok=True)
        return self

    # --- ingest -------------------------------------------------------------------------
    @property
    def catalog_path(self) -> Path:
        return self.root / "catalog.sqlite"

    @property
    def volumes_dir(self) -> Path:
        return self.root / "volumes"

    def volume_path(self, case_id: str) -> Path:
        return self.volumes_dir / f"{case_id}.zarr"

    # --- preprocess ---------------------------------------------------------------------
    @property
    def preprocessed_dir(self) -> Path:
        return self.root / "preprocessed"

    @property
    def fingerprint_path(self) -> Path:
        return self.preprocessed_dir / "fingerprint.json"

    @property
    def plan_path(self) -> Path:
        return self.preprocessed_dir / "plan.json"

    @property
    def splits_path(self) -> Path:
        return self.preprocessed_dir / "splits.json"

    def preprocessed_case_path(self, case_id: str) -> Path:
        return self.preprocessed_dir / "cases" / f"{case_id}.zarr"

    # --- models ---------------------------------------------------------------------------
    @property
    def models_dir(self) -> Path:
        return self.root / "models"

    def model_family_dir(self, family: str) -> Path:
        return self.models_dir / family

    def champion_path(self, family: str) -> Path:
        return self.model_family_dir(family) / "champion.json"

    # --- predictions / reports / stage records -------------------------------------------
    @property
    def predictions_dir(self) -> Path:
        return self.root / "predictions"

    def prediction_dir(self, family: str, version: str) -> Path:
        return self.predictions_dir / family / version

    @property
    def reports_dir(self) -> Path:
        return self.root / "reports"

    @property
    def stages_dir(self) -> Path:
        return self.root / "stages"
