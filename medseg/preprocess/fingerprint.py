"""Dataset fingerprint (nnU-Net): per-case geometry, foreground intensities, class counts and appearance.

Computed once per labeled case (in parallel on Dask workers) and aggregated into what the planner
needs: median spacing, median cropped shape, pooled foreground intensity statistics and modality.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
from distributed import Client
from numpy.typing import NDArray
from pydantic import BaseModel, Field

from medseg.geometry import Geometry
from medseg.io.case_arrays import GT_LABEL, label_volume_names, open_channels, open_image, open_label, slabs
from medseg.io.json_file import read_versioned_json, write_text_atomic
from medseg.io.volume_store import read_meta
from medseg.preprocess.appearance import AppearanceSampler, CaseAppearance, appearance_of
from medseg.preprocess.crop import bbox_shape
from medseg.preprocess.fanout import fan_out
from medseg.preprocess.source import case_seed, source_hash
from medseg.preprocess.stream import label_counts, nonzero_bbox

FINGERPRINT_SCHEMA_VERSION = 1
#: nnU-Net samples this many foreground voxels per case for the dataset intensity statistics.
SAMPLES_PER_CASE = 10_000


class IntensityStats(BaseModel):
    """Statistics of foreground intensities (raw scanner units, e.g. HU)."""

    n: int
    mean: float
    std: float
    median: float
    minimum: float
    maximum: float
    p00_5: float
    p99_5: float


class CaseFingerprint(BaseModel):
    """Fingerprint of one labeled case (tuples in ``(z, y, x)`` order)."""

    case_id: str
    source_hash: str
    modality: str
    spacing: tuple[float, float, float]
    shape: tuple[int, int, int]
    shape_after_crop: tuple[int, int, int]
    intensity: IntensityStats | None = Field(description="over all voxels with gt > 0; None if no foreground")
    class_voxels: dict[int, int] = Field(description="label value -> voxel count (0 = background)")
    label_names: dict[int, str]
    channel_names: list[str] = Field(default_factory=list, description="multi-channel store: its channels")
    channel_intensity: list[IntensityStats | None] = Field(
        default_factory=list, description="multi-channel store: foreground statistics of each channel"
    )
    appearance: CaseAppearance | None = Field(
        None, description="whole-image appearance (drift reference); None in fingerprints of older medseg versions"
    )


class CaseError(BaseModel):
    """A case that could not be processed."""

    case_id: str
    error: str


class Fingerprint(BaseModel):
    """Dataset fingerprint: per-case entries plus the aggregates the planner uses."""

    schema_version: int = FINGERPRINT_SCHEMA_VERSION
    cases: list[CaseFingerprint]
    failed: list[CaseError] = Field(default_factory=list)
    modality: str
    modalities: dict[str, int]
    median_spacing: tuple[float, float, float]
    median_shape_after_crop: tuple[float, float, float]
    foreground_intensity: IntensityStats | None = Field(description="pooled samples of every case")
    foreground_intensity_clipped: IntensityStats | None = Field(
        None, description="pooled samples clipped to [p00_5, p99_5] of foreground_intensity (CT mean/std)"
    )
    label_names: dict[int, str]
    samples_per_case: int = SAMPLES_PER_CASE
    channel_names: list[str] = Field(default_factory=list, description="multi-channel data: every case's channels")
    channel_intensity: list[IntensityStats | None] = Field(
        default_factory=list, description="multi-channel data: pooled foreground samples, per channel"
    )
    channel_intensity_clipped: list[IntensityStats | None] = Field(
        default_factory=list, description="multi-channel data: per channel, clipped to its [p00_5, p99_5]"
    )

    def save(self, path: Path) -> Path:
        path = Path(path)
        write_text_atomic(path, self.model_dump_json(indent=2), mkdir=True)
        return path

    @classmethod
    def load(cls, path: Path) -> Fingerprint:
        return cls.model_validate(
            read_versioned_json(path, FINGERPRINT_SCHEMA_VERSION, "fingerprint", "run `medseg preprocess` first")
        )


def intensity_stats(values: NDArray[np.floating] | NDArray[np.integer]) -> IntensityStats | None:
    """Statistics of a 1D sample (None when empty)."""
    v = np.asarray(values, dtype=np.float64).ravel()
    if v.size == 0:
        return None
    p005, p50, p995 = np.percentile(v, [0.5, 50.0, 99.5])
    return IntensityStats(
        n=int(v.size),
        mean=float(v.mean()),
        std=float(v.std()),
        median=float(p50),
        minimum=float(v.min()),
        maximum=float(v.max()),
        p00_5=float(p005),
        p99_5=float(p995),
    )


def fingerprint_case(
    volume_path: Path, num_samples: int = SAMPLES_PER_CASE, src_hash: str | None = None
) -> tuple[CaseFingerprint, NDArray[np.float32]]:
    """Fingerprint one ingested store that has a ``gt`` label.

    Returns:
        The case fingerprint and ``num_samples`` foreground intensities drawn with replacement
        (seeded by the case id; empty when the case has no foreground): ``(num_samples,)`` of the
        image, or ``(channels, num_samples)`` for a multi-channel store (the same voxels in every channel).
    """
    path = Path(volume_path)
    meta = read_meta(path)
    case_id = str(meta["case_id"])
    if case_id != path.stem:
        raise ValueError(f"{path}: store name does not match its case_id {case_id!r}; re-ingest the case")
    if GT_LABEL not in label_volume_names(path):
        raise ValueError(f"{path}: no '{GT_LABEL}' label volume (only labeled cases are training data)")
    image, gt = open_image(path), open_label(path)
    if tuple(gt.shape) != tuple(image.shape):
        raise ValueError(f"{path}: gt shape {gt.shape} != image shape {image.shape}; re-ingest the case")
    # slab by slab (a large CT is never loaded whole); foreground values are kept in C order, so
    # the result equals image[gt > 0] on the whole volume
    arrays = open_channels(path)
    counts = np.zeros(256, dtype=np.int64)
    fg_parts: list[list[NDArray[np.generic]]] = [[] for _ in arrays]
    sampler = AppearanceSampler(case_id, image.shape, len(arrays))  # whole-image sample (drift reference)
    for z0, z1 in slabs(image):
        gt_slab = np.asarray(gt[z0:z1], dtype=np.uint8)
        c = label_counts(gt_slab)
        counts[: len(c)] += c
        slab_channels = [np.asarray(arr[z0:z1]) for arr in arrays]
        sampler.take(z0, slab_channels)
        for parts, slab in zip(fg_parts, slab_channels, strict=True):
            parts.append(slab[gt_slab > 0])
    fgs = [np.concatenate(p) if p else np.zeros(0, dtype=a.dtype) for p, a in zip(fg_parts, arrays, strict=True)]
    fg = fgs[0]
    rng = np.random.default_rng(case_seed(case_id, "fingerprint"))
    picks = rng.choice(fg.size, size=num_samples, replace=True) if fg.size else np.zeros(0, np.intp)
    drawn = [f[picks].astype(np.float32) for f in fgs]
    samples = np.stack(drawn) if len(arrays) > 1 else drawn[0]
    shape_after_crop = bbox_shape(nonzero_bbox(image))  # = box of the hole-filled nonzero mask
    geometry = Geometry.from_dict(meta["geometry"])
    fp = CaseFingerprint(
        case_id=case_id,
        source_hash=src_hash or source_hash(path),
        modality=str(meta.get("source", {}).get("modality", "")).upper(),
        spacing=geometry.spacing,
        shape=(int(image.shape[0]), int(image.shape[1]), int(image.shape[2])),
        shape_after_crop=shape_after_crop,
        intensity=intensity_stats(fg),
        class_voxels={int(k): int(n) for k, n in enumerate(counts) if n > 0},
        label_names={int(k): str(v) for k, v in meta.get("label_names", {}).items()},
        channel_names=[str(n) for n in meta.get("channel_names") or []],
        channel_intensity=[intensity_stats(f) for f in fgs] if meta.get("channel_names") else [],
        appearance=appearance_of(meta, image.shape, sampler.intensity(), int(sampler.flat.size)),
    )
    return fp, samples


def _cache_file(cache_dir: Path, case_id: str) -> Path:
    return cache_dir / f"{case_id}.npz"


def fingerprint_case_cached(
    volume_path: Path, cache_dir: Path | None = None, num_samples: int = SAMPLES_PER_CASE
) -> tuple[CaseFingerprint, NDArray[np.float32]]:
    """:func:`fingerprint_case`, re-using ``cache_dir/<case_id>.npz`` while the store's hash is unchanged."""
    path = Path(volume_path)
    src = source_hash(path)
    if cache_dir is not None:
        cached = _cache_file(cache_dir, path.stem)
        if cached.is_file():
            try:
                with np.load(cached) as z:
                    fp = CaseFingerprint.model_validate_json(str(z["fingerprint"]))
                    samples = np.asarray(z["samples"], dtype=np.float32)
                fresh = fp.source_hash == src and fp.appearance is not None  # older entries lack the appearance
                if fresh and (samples.shape[-1] if samples.size else 0) in (0, num_samples):
                    return fp, samples
            except (OSError, ValueError, KeyError):
                pass  # unreadable cache entry: recompute
    fp, samples = fingerprint_case(path, num_samples, src)
    if cache_dir is not None:
        cache_dir.mkdir(parents=True, exist_ok=True)
        target = _cache_file(cache_dir, path.stem)
        tmp = target.with_name(f".{target.stem}.tmp.npz")
        np.savez(tmp, fingerprint=np.array(fp.model_dump_json()), samples=samples)
        tmp.replace(target)
    return fp, samples


def _majority_label_names(cases: list[CaseFingerprint]) -> dict[int, str]:
    votes: dict[int, Counter[str]] = {}
    for c in cases:
        for k, v in c.label_names.items():
            votes.setdefault(int(k), Counter())[v] += 1
    return {k: votes[k].most_common(1)[0][0] for k in sorted(votes)}


def aggregate(
    cases: list[CaseFingerprint], samples: list[NDArray[np.float32]], failed: list[CaseError] | None = None
) -> Fingerprint:
    """Dataset aggregates over case fingerprints (sorted by case id) and their intensity samples."""
    if not cases:
        detail = "; ".join(f"{e.case_id}: {e.error}" for e in failed or [])
        raise ValueError(f"no labeled case could be fingerprinted{': ' + detail if detail else ''}")
    modalities = Counter(c.modality for c in cases)
    names = _common_channels(cases)
    per_channel = [np.concatenate([np.atleast_2d(s)[k] for s in samples if s.size]) if any(s.size for s in samples)
                   else np.zeros(0, np.float32) for k in range(max(1, len(names)))]
    pooled = per_channel[0]
    stats = intensity_stats(pooled)
    clipped = intensity_stats(np.clip(pooled, stats.p00_5, stats.p99_5)) if stats is not None else None
    channel_stats = [intensity_stats(v) for v in per_channel] if names else []
    return Fingerprint(
        cases=cases,
        failed=list(failed or []),
        modality=modalities.most_common(1)[0][0],
        modalities=dict(sorted(modalities.items())),
        median_spacing=tuple(float(v) for v in np.median([c.spacing for c in cases], axis=0)),
        median_shape_after_crop=tuple(
            float(v) for v in np.median([c.shape_after_crop for c in cases], axis=0)
        ),
        foreground_intensity=stats,
        foreground_intensity_clipped=clipped,
        label_names=_majority_label_names(cases),
        samples_per_case=int(max((s.shape[-1] for s in samples), default=SAMPLES_PER_CASE)) or SAMPLES_PER_CASE,
        channel_names=names,
        channel_intensity=channel_stats,
        channel_intensity_clipped=[
            intensity_stats(np.clip(v, st.p00_5, st.p99_5)) if st is not None else None
            for v, st in zip(per_channel, channel_stats, strict=False)
        ],
    )


def _common_channels(cases: list[CaseFingerprint]) -> list[str]:
    """The channel names every case shares (``[]``: single-channel data); mixed channels are refused."""
    found = {tuple(c.channel_names) for c in cases}
    if len(found) > 1:
        detail = "; ".join(f"{list(n) or 'one channel'}: {sum(tuple(c.channel_names) == n for c in cases)} case(s)"
                           for n in sorted(found))
        raise ValueError(f"the labeled cases have different input channels ({detail}); re-ingest them with one "
                         "ingest.channels setting")
    return list(found.pop())


def compute_fingerprint(
    volume_paths: list[Path],
    client: Client | None,
    cache_dir: Path | None = None,
    num_samples: int = SAMPLES_PER_CASE,
) -> Fingerprint:
    """Fingerprint labeled ingested stores, fanned out over ``client`` (sequential when None).

    Cases that fail are listed in ``Fingerprint.failed`` and left out of the aggregates.

    Args:
        volume_paths: completed ``volumes/<case_id>.zarr`` stores, each with a ``gt`` label.
        client: Dask client, or None to run in this process.
        cache_dir: optional per-case cache keyed on the store hash (skips re-reading unchanged cases).
        num_samples: foreground intensities sampled per case.
    """
    paths = sorted((Path(p) for p in volume_paths), key=lambda p: p.stem)
    outcomes = fan_out(fingerprint_case_cached, paths, client, cache_dir=cache_dir, num_samples=num_samples)
    cases, samples, failed = [], [], []
    for o in outcomes:
        if o.value is None:
            failed.append(CaseError(case_id=o.item.stem, error=o.error or "unknown error"))
        else:
            cases.append(o.value[0])
            samples.append(o.value[1])
    return aggregate(cases, samples, failed)
