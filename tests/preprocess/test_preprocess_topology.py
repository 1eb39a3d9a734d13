"""Pool/conv properties and the patch-size search."""

from __future__ import annotations

import numpy as np
import pytest

from medseg.preprocess.topology import pool_and_conv_props, search_patch_size, topology_for_fixed_patch


@pytest.mark.parametrize(
    ("spacing", "median"),
    [
        ((1.0, 1.0, 1.0), (300, 512, 512)),
        ((3.0, 0.7, 0.7), (100, 512, 512)),
        ((5.0, 0.5, 0.5), (20, 320, 320)),
        ((0.8, 0.8, 0.8), (21, 37, 53)),
    ],
)
def test_patch_fits_budget_and_is_divisible(
    spacing: tuple[float, float, float], median: tuple[int, ...]
) -> None:
    budget = 64 * 96 * 96
    topo = search_patch_size(spacing, median, budget, max_levels=5)
    assert int(np.prod(topo.patch_size)) <= budget
    assert topo.levels <= 5
    assert len(topo.kernel_sizes) == len(topo.strides) == topo.levels
    assert topo.strides[0] == [1, 1, 1] and topo.kernel_sizes[-1] == [3, 3, 3]
    for axis in range(3):
        pools = sum(1 for s in topo.strides if s[axis] == 2)
        assert topo.patch_size[axis] % 2**pools == 0
        assert topo.num_pool_per_axis[axis] == pools
        # bottleneck keeps at least 4 voxels per pooled axis
        if pools:
            assert topo.patch_size[axis] // 2**pools >= 4


def test_anisotropic_spacing_gets_inplane_kernels_and_strides_first() -> None:
    topo = pool_and_conv_props((4.0, 1.0, 1.0), (32, 128, 128))
    # coarse z axis: (1, 3, 3) kernels and (1, 2, 2) strides until the spacings are within 2x
    assert topo.kernel_sizes[0] == [1, 3, 3] and topo.kernel_sizes[1] == [1, 3, 3]
    assert topo.strides[1] == [1, 2, 2] and topo.strides[2] == [1, 2, 2]
    assert topo.strides[3] == [2, 2, 2] and topo.kernel_sizes[2] == [3, 3, 3]


def test_isotropic_patch_pools_every_axis() -> None:
    topo = pool_and_conv_props((1.0, 1.0, 1.0), (64, 64, 64))
    assert topo.strides == [[1, 1, 1]] + [[2, 2, 2]] * 4
    assert topo.patch_size == (64, 64, 64) and topo.divisible_by == (16, 16, 16)


def test_max_levels_caps_depth() -> None:
    topo = pool_and_conv_props((1.0, 1.0, 1.0), (128, 128, 128), max_levels=3)
    assert topo.levels == 3 and topo.patch_size == (128, 128, 128)


def test_fixed_patch_is_kept_exactly() -> None:
    topo = topology_for_fixed_patch((1.0, 1.0, 1.0), (24, 40, 36))
    assert topo.patch_size == (24, 40, 36)
    assert topo.num_pool_per_axis[0] <= 3 and topo.num_pool_per_axis[2] <= 2


def test_small_budget_shrinks_the_largest_relative_axis() -> None:
    topo = search_patch_size((1.0, 1.0, 1.0), (40, 400, 400), 4096, max_levels=5)
    assert int(np.prod(topo.patch_size)) <= 4096
    assert topo.patch_size[0] <= topo.patch_size[1] == topo.patch_size[2]
