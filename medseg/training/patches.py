"""Random training patches from preprocessed case stores, with foreground oversampling and augmentation.

Sample ``i`` of epoch ``e`` depends only on ``(seed, e, i)``, so a run is reproducible whatever the
number of DataLoader workers, and resuming at an epoch boundary replays exactly the same patches.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from torch.utils.data import Dataset

from medseg.io.case_arrays import open_channels, open_label
from medseg.training.augment import AugmentParams, augment_patch, draw_augmentation
from medseg.training.foreground import foreground_locations

#: Cases are loaded into RAM when all images + labels together stay below this many bytes.
IN_MEMORY_LIMIT_BYTES = 2 * 1024**3


@dataclass
class TrainCase:
    """One preprocessed case: image ``(z, y, x)`` float32, label uint8 (numpy in RAM or lazy zarr)."""

    case_id: str
    image: Any
    label: Any
    fg: dict[int, NDArray[np.int64]]
    extra: list[Any] = field(default_factory=list)  # channels after the first (multi-channel plans)

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(s) for s in self.image.shape)  # type: ignore[return-value]


def load_cases(paths: dict[str, Path], in_memory: bool | None = None) -> list[TrainCase]:
    """Open the preprocessed stores ``{case_id: path}`` (``in_memory=None`` decides by total size)."""
    if not paths:
        raise ValueError("no training cases: the split has an empty train set (need at least one case)")
    arrays = {cid: (open_channels(p), open_label(p)) for cid, p in paths.items()}
    if in_memory is None:
        total = sum(int(np.prod(ch[0].shape)) * (4 * len(ch) + 1) for ch, _ in arrays.values())  # float32 + uint8
        in_memory = total <= IN_MEMORY_LIMIT_BYTES
    cases = []
    for cid, (channels, lab) in arrays.items():
        img = channels[0]
        if tuple(img.shape) != tuple(lab.shape):
            raise ValueError(f"case {cid}: image shape {img.shape} != label shape {lab.shape} in {paths[cid]}")
        image: Any = np.asarray(img[...], dtype=np.float32) if in_memory else img
        label: Any = np.asarray(lab[...], dtype=np.uint8) if in_memory else lab
        extra = [np.asarray(c[...], dtype=np.float32) if in_memory else c for c in channels[1:]]
        cases.append(TrainCase(cid, image, label, foreground_locations(paths[cid]), extra))
    return cases


def crop_padded(array: Any, start: tuple[int, ...], size: tuple[int, ...], dtype: Any) -> NDArray[Any]:
    """``array[start : start + size]`` where out-of-bounds parts (negative ``start`` too) are zero."""
    out = np.zeros(size, dtype=dtype)
    src, dst = [], []
    for st, sz, dim in zip(start, size, array.shape, strict=True):
        lo, hi = max(st, 0), min(st + sz, int(dim))
        if hi <= lo:
            return out
        src.append(slice(lo, hi))
        dst.append(slice(lo - st, hi - st))
    out[tuple(dst)] = np.asarray(array[tuple(src)], dtype=dtype)
    return out


def patch_start(
    shape: tuple[int, ...], patch: tuple[int, ...], rng: np.random.Generator, centre: NDArray[np.int64] | None
) -> tuple[int, ...]:
    """Patch origin: random inside the volume, or centred on ``centre`` (clipped so the patch stays inside
    the volume where the volume is larger than the patch; smaller axes are padded)."""
    start = []
    for axis, (dim, p) in enumerate(zip(shape, patch, strict=True)):
        lo, hi = min(0, dim - p), max(0, dim - p)
        if centre is None:
            s = int(rng.integers(lo, hi + 1))
        else:
            s = int(np.clip(int(centre[axis]) - p // 2, lo, hi))
        start.append(s)
    return tuple(start)


class PatchDataset(Dataset[dict[str, Any]]):
    """``samples_per_epoch`` random patches per epoch; item = dict(image, label, case_id, forced_fg).

    ``image`` is a float32 tensor ``(channels, *patch)``, ``label`` an int64 tensor ``(1, *patch)``; for a 2D
    plan (``patch_size == (1, y, x)``, ``spatial_dims == 2``) the z axis is dropped: ``(1, y, x)``.
    A fraction ``foreground_oversample`` of samples is centred on a random stored foreground voxel of a
    random present class; the rest are uniformly random. With ``batch_size`` (the loader's, > 1) the
    forced samples are the last ``batch_size - round(batch_size * (1 - foreground_oversample))`` of
    every batch, as in nnU-Net: each batch holds foreground (batch 2 at 0.33: one sample of two).
    Without it each sample is forced with probability ``foreground_oversample``.
    """

    def __init__(
        self,
        cases: list[TrainCase],
        patch_size: tuple[int, int, int],
        samples_per_epoch: int,
        foreground_oversample: float,
        seed: int,
        augment: AugmentParams | None = None,
        spatial_dims: int = 3,
        defer_augmentation: bool = False,
        batch_size: int | None = None,
    ) -> None:
        if not cases:
            raise ValueError("PatchDataset needs at least one case")
        if spatial_dims == 2 and patch_size[0] != 1:
            raise ValueError(f"a 2D plan needs patch_size (1, y, x), got {patch_size}")
        self.cases = cases
        self.patch_size = tuple(int(p) for p in patch_size)
        self.samples_per_epoch = int(samples_per_epoch)
        self.foreground_oversample = float(foreground_oversample)
        self.seed = int(seed)
        self.augment = augment
        self.spatial_dims = spatial_dims
        self.defer_augmentation = bool(defer_augmentation)
        self.batch_size = int(batch_size) if batch_size and batch_size > 1 else None
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose samples ``__getitem__`` returns (call before creating the iterator)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.samples_per_epoch

    def sample(self, index: int) -> tuple[NDArray[np.float32], NDArray[np.uint8], str, bool]:
        """Raw ``(image, label, case_id, forced_fg)`` patch ``(z, y, x)`` of sample ``index`` of the epoch."""
        image, label, case_id, forced, _ = self._sample(index)
        return image, label, case_id, forced

    def _sample(
        self, index: int
    ) -> tuple[NDArray[np.float32], NDArray[np.uint8], str, bool, dict[str, Any] | None]:
        rng = np.random.default_rng([self.seed, self.epoch, int(index)])
        case = self.cases[int(rng.integers(len(self.cases)))]
        forced = bool(rng.random() < self.foreground_oversample)
        if self.batch_size is not None:
            forced = int(index) % self.batch_size >= round(self.batch_size * (1 - self.foreground_oversample))
        centre = None
        if forced:
            present = [c for c, loc in sorted(case.fg.items()) if len(loc) > 0]
            if present:
                locs = case.fg[present[int(rng.integers(len(present)))]]
                centre = locs[int(rng.integers(len(locs)))]
            else:
                forced = False
        start = patch_start(case.shape, self.patch_size, rng, centre)
        image = crop_padded(case.image, start, self.patch_size, np.float32)
        if case.extra:  # multi-channel: (channels, z, y, x)
            image = np.stack([image, *(crop_padded(c, start, self.patch_size, np.float32) for c in case.extra)])
        label = crop_padded(case.label, start, self.patch_size, np.uint8)
        draws = None
        if self.augment is not None:
            if self.defer_augmentation:
                draws = draw_augmentation(rng, self.augment, self.patch_size)
            else:
                image, label = augment_patch(image, label, rng, self.augment)
        return image, label, case.case_id, forced, draws

    def __getitem__(self, index: int) -> dict[str, Any]:
        """Item dict; with ``defer_augmentation`` the patch is raw and ``"aug"`` holds the drawn
        parameters (tensors) for :func:`medseg.training.gpu_augment.augment_batch` on the device."""
        image, label, case_id, forced, draws = self._sample(index)
        if self.spatial_dims == 2:
            image, label = image[..., 0, :, :], label[0]
        pixels = torch.from_numpy(np.ascontiguousarray(image))
        item: dict[str, Any] = {
            "image": pixels if image.ndim == label.ndim + 1 else pixels[None],
            "label": torch.from_numpy(np.ascontiguousarray(label).astype(np.int64))[None],
            "case_id": case_id,
            "forced_fg": forced,
        }
        if draws is not None:
            item["aug"] = {k: torch.as_tensor(v) for k, v in draws.items()}
        return item
