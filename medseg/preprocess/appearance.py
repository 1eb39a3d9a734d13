"""A case's appearance: what it looks like to the network, computable for ANY ingested store (labeled or not).

Whole-image intensity percentiles from a seeded voxel sample (one set per channel), the grid (spacing,
shape) and the acquisition descriptors the store's ``source`` keeps (modality, manufacturer, model,
protocol; empty for NIfTI/NRRD cases and for stores ingested before medseg recorded them). The
fingerprint records it for every training case (:class:`~medseg.preprocess.fingerprint.CaseFingerprint`)
and the drift report (:mod:`medseg.drift`) compares new cases with those.

The sample: :data:`APPEARANCE_SAMPLES` flat voxel indices drawn with replacement, seeded by the case id
(same case, same sample in any process), read slab by slab (a large CT is never loaded whole); every
channel is sampled at the same voxels.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, Field

from medseg.geometry import Geometry
from medseg.io.case_arrays import open_channels, slabs
from medseg.io.volume_store import read_meta
from medseg.preprocess.source import case_seed

#: voxels sampled per case for the whole-image intensity percentiles
APPEARANCE_SAMPLES = 20_000


class ChannelIntensity(BaseModel):
    """Whole-image intensity statistics of one channel (raw scanner units, e.g. HU)."""

    p01: float = Field(description="1st percentile")
    p50: float = Field(description="median")
    p99: float = Field(description="99th percentile")
    mean: float
    std: float


class CaseAppearance(BaseModel):
    """The appearance of one ingested case (tuples in ``(z, y, x)`` order)."""

    case_id: str
    modality: str = Field(description="DICOM Modality (upper case); '' when unknown")
    manufacturer: str = Field("", description="DICOM Manufacturer; '' when unknown")
    model: str = Field("", description="DICOM ManufacturerModelName; '' when unknown")
    protocol: str = Field("", description="DICOM ProtocolName; '' when unknown")
    spacing: tuple[float, float, float] = Field(description="mm")
    shape: tuple[int, int, int] = Field(description="voxels")
    channel_names: list[str] = Field(default_factory=list, description="multi-channel store: its channels")
    intensity: list[ChannelIntensity] = Field(description="one entry per channel (channel 0 first)")
    samples: int = Field(description="voxels sampled per channel")


def sample_indices(case_id: str, n_voxels: int, n_samples: int = APPEARANCE_SAMPLES) -> NDArray[np.int64]:
    """Sorted flat voxel indices ``(n_samples,)`` in ``[0, n_voxels)``, seeded by ``case_id``."""
    rng = np.random.default_rng(case_seed(case_id, "appearance"))
    return np.sort(rng.integers(0, max(1, n_voxels), size=n_samples if n_voxels > 0 else 0))


class AppearanceSampler:
    """Collects the sampled voxels of a store while it is read slab by slab (``take`` each ``[z0:z1]`` slab).

    Args:
        case_id: seeds the sample.
        shape: ``(z, y, x)`` of the image.
        channels: number of channels read.
        n_samples: voxels sampled.
    """

    def __init__(self, case_id: str, shape: Sequence[int], channels: int = 1,
                 n_samples: int = APPEARANCE_SAMPLES) -> None:
        self.plane = int(shape[1]) * int(shape[2])
        self.flat = sample_indices(case_id, int(shape[0]) * self.plane, n_samples)
        self.parts: list[list[NDArray[np.float32]]] = [[] for _ in range(channels)]

    def take(self, z0: int, slab_channels: Sequence[NDArray[Any]]) -> None:
        """Keep the sampled voxels of the slab starting at ``z0`` (one ``(dz, y, x)`` array per channel)."""
        dz = int(slab_channels[0].shape[0])
        lo, hi = np.searchsorted(self.flat, [z0 * self.plane, (z0 + dz) * self.plane])
        local = self.flat[lo:hi] - z0 * self.plane
        for parts, slab in zip(self.parts, slab_channels, strict=True):
            parts.append(np.asarray(slab).reshape(-1)[local].astype(np.float32))

    def intensity(self) -> list[ChannelIntensity]:
        """Statistics of every channel's sample (all zeros for an empty image)."""
        return [channel_intensity(np.concatenate(p) if p else np.zeros(0, np.float32)) for p in self.parts]


def channel_intensity(values: NDArray[np.floating]) -> ChannelIntensity:
    """p1/p50/p99, mean and std of a 1D sample (zeros when empty)."""
    v = np.asarray(values, dtype=np.float64).ravel()
    if v.size == 0:
        return ChannelIntensity(p01=0.0, p50=0.0, p99=0.0, mean=0.0, std=0.0)
    p01, p50, p99 = np.percentile(v, [1.0, 50.0, 99.0])
    return ChannelIntensity(p01=float(p01), p50=float(p50), p99=float(p99), mean=float(v.mean()), std=float(v.std()))


def appearance_of(meta: dict[str, Any], shape: Sequence[int], intensity: list[ChannelIntensity],
                  samples: int) -> CaseAppearance:
    """The appearance of a store from its ``medseg`` attributes and its sampled intensities."""
    source = meta.get("source") or {}
    return CaseAppearance(
        case_id=str(meta["case_id"]),
        modality=str(source.get("modality") or "").upper(),
        manufacturer=str(source.get("manufacturer") or ""),
        model=str(source.get("model") or ""),
        protocol=str(source.get("protocol") or ""),
        spacing=Geometry.from_dict(meta["geometry"]).spacing,
        shape=(int(shape[0]), int(shape[1]), int(shape[2])),
        channel_names=[str(n) for n in meta.get("channel_names") or []],
        intensity=intensity,
        samples=samples,
    )


def case_appearance(volume_path: Path, n_samples: int = APPEARANCE_SAMPLES) -> CaseAppearance:
    """The appearance of one completed ingested store (reads it once, slab by slab)."""
    path = Path(volume_path)
    meta = read_meta(path)
    arrays = open_channels(path)
    shape = tuple(int(s) for s in arrays[0].shape)
    sampler = AppearanceSampler(str(meta["case_id"]), shape, len(arrays), n_samples)
    for z0, z1 in slabs(arrays[0]):
        sampler.take(z0, [np.asarray(a[z0:z1]) for a in arrays])
    return appearance_of(meta, shape, sampler.intensity(), int(sampler.flat.size))
