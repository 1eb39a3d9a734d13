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


class ChannelNormalization(BaseModel):
    """How one input channel of a multi-channel plan is normalised (nnU-Net: per channel)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(description="channel name (ingest.channels), e.g. T1post")
    normalization: Normalization
    clip_range: tuple[float, float] | None = Field(None, description="CT: this channel's foreground p0.5/p99.5")
    intensity_mean: float | None = Field(None, description="CT: this channel's foreground mean (after clipping)")
    intensity_std: float | None = Field(None, description="CT: this channel's foreground std (after clipping)")


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
    channels: list[ChannelNormalization] = Field(
        default_factory=list,
        description="multi-channel plans: every input channel in network order (the first one repeats the "
        "top-level normalisation); empty = one unnamed channel",
    )

    @property
    def channel_names(self) -> list[str]:
        """Input channel names in network order; ``[]`` for a single-channel plan."""
        return [c.name for c in self.channels]

    @property
    def in_channels(self) -> int:
        """Number of network input channels."""
        return max(1, len(self.channels))

    def for_channel(self, k: int) -> Plan:
        """This plan with channel ``k``'s normalisation at the top level (what the normalisers read)."""
        if not self.channels:
            if k != 0:
                raise ValueError(f"plan {self.plan_hash()} has one input channel, not channel {k}")
            return self
        c = self.channels[k]
        return self.model_copy(update={"normalization": c.normalization, "clip_range": c.clip_range,
                                       "intensity_mean": c.intensity_mean, "intensity_std": c.intensity_std})

    def plan_hash(self) -> str:
        """Stable short hash of the plan content (changes whenever any field changes).

        A single-channel plan hashes as before ``channels`` existed (the empty list is left out).
        """
        data = self.model_dump(mode="json")
        if not data["channels"]:
            del data["channels"]
        text = json.dumps(data, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def save(self, path: Path) -> Path:
        data = self.model_dump(mode="json")
        if not data["channels"]:
            del data["channels"]  # single-channel plan files stay as they were
        return write_json(path, {**data, "plan_hash": self.plan_hash()})

    @classmethod
    def load(cls, path: Path) -> Plan:
        data = read_versioned_json(path, PLAN_SCHEMA_VERSION, "plan", "run `medseg preprocess` first")
        stored = data.pop("plan_hash", None)
        plan = cls.model_validate(data)
        if stored is not None and stored != plan.plan_hash():
            raise ValueError(f"plan {path} was edited by hand: stored hash {stored} != content {plan.plan_hash()}")
        return plan
