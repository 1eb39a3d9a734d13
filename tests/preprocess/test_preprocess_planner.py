"""Planning: target spacing, anisotropy rule, normalisation, topology, overrides."""

from __future__ import annotations

import numpy as np
import pytest

from medseg.config import PreprocessConfig, TrainConfig
from medseg.plan import Normalization
from medseg.preprocess.fingerprint import CaseFingerprint, Fingerprint, aggregate
from medseg.preprocess.planner import make_plan, target_spacing


def _fp(
    spacings: list[tuple[float, float, float]],
    shapes: list[tuple[int, int, int]],
    modality: str = "MR",
) -> Fingerprint:
    cases, samples = [], []
    for i, (sp, sh) in enumerate(zip(spacings, shapes, strict=True)):
        cases.append(
            CaseFingerprint(
                case_id=f"c{i}",
                source_hash="x",
                modality=modality,
                spacing=sp,
                shape=sh,
                shape_after_crop=sh,
                intensity=None,
                class_voxels={0: 100, 1: 10, 2: 5},
                label_names={1: "liver", 2: "tumour"},
            )
        )
        samples.append(np.linspace(-100.0 + i, 300.0 + i, 1000, dtype=np.float32))
    return aggregate(cases, samples)


def test_isotropic_data_uses_the_median_spacing() -> None:
    fp = _fp([(1.0, 0.8, 0.8), (1.5, 0.7, 0.7), (2.0, 0.9, 0.9)], [(100, 200, 200)] * 3)
    assert target_spacing(fp, 3.0) == (1.5, 0.8, 0.8)


def test_anisotropic_axis_takes_its_10th_percentile() -> None:
    z = [4.0, 5.0, 5.0, 5.0, 6.0, 3.5, 5.0, 5.0, 4.5, 5.0]
    fp = _fp([(s, 0.7, 0.7) for s in z], [(30, 256, 256)] * 10)
    tz, ty, tx = target_spacing(fp, 3.0)
    assert (ty, tx) == (0.7, 0.7)
    assert tz == pytest.approx(np.percentile(z, 10)) and tz < np.median(z)
    plan = make_plan(fp, PreprocessConfig.model_validate({}), TrainConfig.model_validate({}))
    assert plan.target_spacing[0] == pytest.approx(np.percentile(z, 10))
    assert plan.anisotropic_axis == 0
    # first levels pool in-plane only with (1, 3, 3) kernels
    assert plan.kernel_sizes[0] == [1, 3, 3] and plan.strides[1] == [1, 2, 2]


def test_anisotropic_spacing_with_many_slices_keeps_the_median() -> None:
    # nnU-Net's rule also needs few voxels along the coarse axis
    fp = _fp([(4.0, 0.7, 0.7), (5.0, 0.7, 0.7), (6.0, 0.7, 0.7)], [(300, 256, 256)] * 3)
    assert target_spacing(fp, 3.0)[0] == 5.0


def test_mr_plan_fields_and_patch_divisibility() -> None:
    fp = _fp([(2.0, 1.0, 1.0)] * 3, [(20, 40, 40), (24, 44, 40), (20, 40, 48)])
    cfg = PreprocessConfig.model_validate(dict(max_patch_voxels=16 * 32 * 32))
    plan = make_plan(fp, cfg, TrainConfig.model_validate(dict(filters=[8, 16, 32, 64, 128, 256])))
    assert plan.normalization == Normalization.ZSCORE and plan.clip_range is None
    assert plan.target_spacing == (2.0, 1.0, 1.0)
    assert plan.median_shape == (20, 40, 40)
    assert plan.num_classes == 3 and plan.label_names == {1: "liver", 2: "tumour"}
    assert np.prod(plan.patch_size) <= cfg.max_patch_voxels
    assert len(plan.filters) == len(plan.strides) == len(plan.kernel_sizes)
    assert plan.filters == [8, 16, 32, 64, 128, 256][: len(plan.strides)]
    for axis in range(3):
        pools = sum(s[axis] == 2 for s in plan.strides)
        assert plan.patch_size[axis] % 2**pools == 0
    assert plan.spatial_dims == 3


def test_ct_plan_has_dataset_statistics() -> None:
    fp = _fp([(1.0, 1.0, 1.0)] * 2, [(40, 40, 40)] * 2, modality="CT")
    plan = make_plan(fp, PreprocessConfig.model_validate({}), TrainConfig.model_validate({}))
    assert plan.normalization == Normalization.CT
    assert fp.foreground_intensity is not None
    assert plan.clip_range == (fp.foreground_intensity.p00_5, fp.foreground_intensity.p99_5)
    assert plan.intensity_mean == pytest.approx(100.5, abs=1.0)
    assert plan.intensity_std is not None and plan.intensity_std > 100


def test_overrides_and_filter_cap() -> None:
    fp = _fp([(2.0, 1.0, 1.0)] * 3, [(20, 40, 40)] * 3)
    cfg = PreprocessConfig.model_validate(dict(target_spacing=(1.0, 1.0, 1.0), patch_size=(24, 40, 40)))
    plan = make_plan(fp, cfg, TrainConfig.model_validate(dict(filters=[4, 8, 16])))
    assert plan.target_spacing == (1.0, 1.0, 1.0)
    assert plan.median_shape == (40, 40, 40)
    assert plan.patch_size == (24, 40, 40)
    assert len(plan.strides) == 3 and plan.filters == [4, 8, 16]


def test_plan_hash_changes_with_config() -> None:
    fp = _fp([(2.0, 1.0, 1.0)] * 3, [(20, 40, 40)] * 3)
    a = make_plan(fp, PreprocessConfig.model_validate({}), TrainConfig.model_validate({}))
    b = make_plan(fp, PreprocessConfig.model_validate({}), TrainConfig.model_validate({}))
    c = make_plan(
        fp,
        PreprocessConfig.model_validate(dict(max_patch_voxels=16 * 16 * 16)),
        TrainConfig.model_validate({}),
    )
    assert a.plan_hash() == b.plan_hash() != c.plan_hash()


def test_2d_plan() -> None:
    fp = _fp([(5.0, 0.5, 0.5)] * 3, [(20, 320, 320)] * 3)
    plan = make_plan(fp, PreprocessConfig.model_validate({}), TrainConfig.model_validate({}), spatial_dims=2)
    assert plan.spatial_dims == 2 and plan.patch_size[0] == 1
    assert all(s[0] == 1 for s in plan.strides) and all(k[0] == 1 for k in plan.kernel_sizes)
    assert plan.patch_size[1] % 2 ** sum(s[1] == 2 for s in plan.strides) == 0


def test_unnamed_observed_class_gets_a_name() -> None:
    fp = _fp([(1.0, 1.0, 1.0)] * 2, [(40, 40, 40)] * 2)
    fp.cases[0].class_voxels[4] = 7
    plan = make_plan(fp, PreprocessConfig.model_validate({}), TrainConfig.model_validate({}))
    assert plan.num_classes == 5
    assert plan.label_names == {1: "liver", 2: "tumour", 3: "class_3", 4: "class_4"}
