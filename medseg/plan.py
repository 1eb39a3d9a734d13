"""The preprocessing/training plan: the typed, versioned, hashed artifact shared by stages 2-4.

Written by the preprocess stage to ``preprocessed/plan.json``; copied into every model bundle so
inference re-uses exactly the preprocessing the model was trained with.
"""

from __future__ import annotations

import hashlib
import json
from enum import StrEnum
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from medseg.io.json_file import read_versioned_json, write_json

PLAN_SCHEMA_VERSION = 1


class Normalization(StrEnum):
    """Intensity normalisation scheme (nnU-Net's CTNormalization / ZScoreNormalization)."""

    CT = "ct"  # clip to dataset foreground [p0.5, p99.5], z-score with dataset foreground mean/std
    ZSCORE = "zscore"  # per-case z-score inside the nonzero mask


class Plan(BaseModel):
    """Everything needed to turn a native volume into network input, and the network topology.

    Axis order of every tuple is the array order ``(z, y, x)``.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: int = PLAN_SCHEMA_VERSION
    modality: str = Field(description="DICOM Modality of the image series, e.g. CT or MR")
    normalization: Normalization
    clip_range: tuple[float, float] | None = Field(None, description="CT: foreground p0.5/p99.5")
    intensity_mean: float | None = Field(None, description="CT: dataset foreground mean (after clipping)")
    intensity_std: float | None = Field(None, description="CT: dataset foreground std (after clipping)")
    target_spacing: tuple[float, float, float]
    anisotropic_axis: int | None = Field(None, description="axis resampled separately (order 0), if any")
    anisotropy_threshold: float = Field(
        3.0, gt=1.0, description="max/min spacing ratio above which a case is resampled with separate z"
    )
    crop_to_nonzero: bool = True
    median_shape: tuple[int, int, int] = Field(description="median shape after resampling (voxels)")
    patch_size: tuple[int, int, int] = Field(description="network patch; (1, y, x) for a 2D plan")
    spatial_dims: int = Field(3, ge=2, le=3)
    kernel_sizes: list[list[int]]
    strides: list[list[int]]
    filters: list[int]
    num_classes: int = Field(ge=2, description="including background")
    label_names: dict[int, str] = Field(description="class index -> name, background excluded")

    def plan_hash(self) -> str:
        """Stable short hash of the plan content (changes whenever any field changes)."""
        text = json.dumps(self.model_dump(mode="json"), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def save(self, path: Path) -> Path:
        return write_json(path, {**self.model_dump(mode="json"), "plan_hash": self.plan_hash()})

    @classmethod
    def load(cls, path: Path) -> Plan:
        data = read_versioned_json(path, PLAN_SCHEMA_VERSION, "plan", "run `medseg preprocess` first")
        stored = data.pop("plan_hash", None)
        plan = cls.model_validate(data)
        if stored is not None and stored != plan.plan_hash():
            raise ValueError(f"plan {path} was edited by hand: stored hash {stored} != content {plan.plan_hash()}")
        return plan
