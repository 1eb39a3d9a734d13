"""U-Net topology and patch size (nnU-Net's ``get_pool_and_conv_props`` and patch-size search).

All sequences are in array axis order ``(z, y, x)`` (or ``(y, x)`` for a 2D plan).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

#: Smallest edge of a bottleneck feature map (nnU-Net: 4).
MIN_FEATURE_MAP_SIZE = 4


@dataclass(frozen=True)
class Topology:
    """DynUNet topology for one patch size.

    ``kernel_sizes`` and ``strides`` have one entry per resolution level; ``strides[0]`` is all ones
    and the last ``kernel_sizes`` entry is the bottleneck. ``patch_size`` is divisible by
    ``divisible_by`` = ``2 ** num_pool_per_axis``.
    """

    num_pool_per_axis: tuple[int, ...]
    strides: list[list[int]]
    kernel_sizes: list[list[int]]
    patch_size: tuple[int, ...]
    divisible_by: tuple[int, ...]

    @property
    def levels(self) -> int:
        return len(self.strides)


def _trailing_twos(n: int) -> int:
    count = 0
    while n > 0 and n % 2 == 0:
        n //= 2
        count += 1
    return count


def pad_to_divisible(shape: Sequence[int], divisible_by: Sequence[int]) -> tuple[int, ...]:
    """Smallest shape >= ``shape`` whose axes are multiples of ``divisible_by``."""
    return tuple(int(-(-s // d) * d) for s, d in zip(shape, divisible_by, strict=True))


def pool_and_conv_props(
    spacing: Sequence[float],
    patch_size: Sequence[int],
    min_feature_map_size: int = MIN_FEATURE_MAP_SIZE,
    max_levels: int | None = None,
    max_pool_per_axis: Sequence[int] | None = None,
) -> Topology:
    """nnU-Net's ``get_pool_and_conv_props``: pool the finest axes first, 3-kernels once isotropic-ish.

    An axis is pooled at a level when its feature map stays >= ``2 * min_feature_map_size`` and its
    current spacing is within 2x of the finest valid axis, so thick-slice axes get kernel 1 and
    stride 1 until the in-plane axes have caught up. A lone poolable axis needs a map >=
    ``3 * min_feature_map_size``. Kernel size of an axis becomes 3 once its spacing is within 2x of
    the finest current spacing.

    Args:
        spacing: voxel spacing (mm).
        patch_size: requested patch (voxels); the returned one is padded to be divisible.
        min_feature_map_size: smallest bottleneck edge.
        max_levels: cap on resolution levels (e.g. the number of filter sizes available).
        max_pool_per_axis: cap on poolings per axis (keeps a user patch size exactly divisible).
    """
    dim = len(spacing)
    current_spacing = [float(s) for s in spacing]
    current_size = [float(s) for s in patch_size]
    caps = list(max_pool_per_axis) if max_pool_per_axis is not None else [10**6] * dim
    strides: list[list[int]] = [[1] * dim]
    kernels: list[list[int]] = []
    num_pool = [0] * dim
    kernel = [1] * dim
    while max_levels is None or len(strides) < max_levels:
        valid = [i for i in range(dim) if current_size[i] >= 2 * min_feature_map_size]
        if not valid:
            break
        finest = min(current_spacing[i] for i in valid)
        valid = [i for i in valid if current_spacing[i] / finest < 2 and num_pool[i] < caps[i]]
        if len(valid) == 1 and current_size[valid[0]] < 3 * min_feature_map_size:
            break
        if not valid:
            break
        min_spacing = min(current_spacing)
        for d in range(dim):
            if kernel[d] != 3 and current_spacing[d] / min_spacing < 2:
                kernel[d] = 3
        stride = [1] * dim
        for v in valid:
            stride[v] = 2
            num_pool[v] += 1
            current_spacing[v] *= 2
            current_size[v] = float(np.ceil(current_size[v] / 2))
        strides.append(stride)
        kernels.append(list(kernel))
    kernels.append([3] * dim)  # bottleneck
    divisible = tuple(2**n for n in num_pool)
    return Topology(
        num_pool_per_axis=tuple(num_pool),
        strides=strides,
        kernel_sizes=kernels,
        patch_size=pad_to_divisible([int(round(s)) for s in patch_size], divisible),
        divisible_by=divisible,
    )


def topology_for_fixed_patch(
    spacing: Sequence[float], patch_size: Sequence[int], max_levels: int | None = None
) -> Topology:
    """Topology for a user-given patch: never pools an axis more often than its size is divisible by 2."""
    caps = [_trailing_twos(int(p)) for p in patch_size]
    topo = pool_and_conv_props(spacing, patch_size, max_levels=max_levels, max_pool_per_axis=caps)
    assert topo.patch_size == tuple(int(p) for p in patch_size)
    return topo


def search_patch_size(
    spacing: Sequence[float],
    median_shape: Sequence[float],
    max_voxels: int,
    max_levels: int | None = None,
) -> Topology:
    """nnU-Net's patch-size search under a voxel budget instead of a VRAM estimate.

    Start from a patch whose edge lengths in mm are equal (edge ∝ 1/spacing) holding ``max_voxels``
    voxels, clip it to the median image shape, then repeatedly shrink the axis with the largest
    patch/median ratio by its divisibility step until the padded patch fits the budget.
    """
    dim = len(spacing)
    inv = 1.0 / np.asarray(spacing, dtype=float)
    initial = inv * (max_voxels / float(np.prod(inv))) ** (1.0 / dim)
    median = np.maximum(np.asarray(median_shape, dtype=float), 1.0)
    patch = [max(1, int(round(v))) for v in np.minimum(initial, median)]
    topo = pool_and_conv_props(spacing, patch, max_levels=max_levels)
    while int(np.prod(topo.patch_size)) > max_voxels:
        ratios = [p / m for p, m in zip(topo.patch_size, median, strict=True)]
        order = np.argsort(ratios)[::-1]
        shrunk = False
        for axis in order:
            size = list(topo.patch_size)
            step = topo.divisible_by[axis]
            if size[axis] - step < 1:
                continue
            size[axis] -= step
            trial = pool_and_conv_props(spacing, size, max_levels=max_levels)
            size[axis] = topo.patch_size[axis] - trial.divisible_by[axis]
            if size[axis] < 1:
                continue
            candidate = pool_and_conv_props(spacing, size, max_levels=max_levels)
            if np.prod(candidate.patch_size) >= np.prod(topo.patch_size):
                continue  # padding grew it back: try another axis
            topo = candidate
            shrunk = True
            break
        if not shrunk:
            raise ValueError(
                f"cannot fit a patch into max_patch_voxels={max_voxels} for spacing {tuple(spacing)};"
                " raise preprocess.max_patch_voxels"
            )
    return topo
