"""Experiment planning (nnU-Net ``ExperimentPlanner``): fingerprint + config -> :class:`Plan`."""

from __future__ import annotations

import logging

import numpy as np

from medseg.config import PreprocessConfig, TrainConfig
from medseg.plan import ChannelNormalization, Normalization, Plan
from medseg.preprocess.fingerprint import Fingerprint
from medseg.preprocess.resample import compute_new_shape, separate_z_axis
from medseg.preprocess.topology import Topology, search_patch_size, topology_for_fixed_patch

log = logging.getLogger(__name__)


def target_spacing(fp: Fingerprint, anisotropy_threshold: float) -> tuple[float, float, float]:
    """nnU-Net's full-resolution target spacing: the median spacing, except for anisotropic data.

    When the median spacing of the coarsest axis exceeds ``threshold x`` the other axes *and* that
    axis has fewer than ``1/threshold`` of the voxels of the others (median cropped shape), the
    coarse axis takes the 10th percentile of its spacings instead (but never finer than the other
    axes), so thick-slice cases are not interpolated to absurdly many slices.
    """
    spacings = np.asarray([c.spacing for c in fp.cases], dtype=float)
    target = np.median(spacings, axis=0)
    sizes = np.median(np.asarray([c.shape_after_crop for c in fp.cases], dtype=float), axis=0)
    worst = int(np.argmax(target))
    others = [i for i in range(3) if i != worst]
    aniso_spacing = target[worst] > anisotropy_threshold * max(target[i] for i in others)
    aniso_voxels = sizes[worst] * anisotropy_threshold < min(sizes[i] for i in others)
    if aniso_spacing and aniso_voxels:
        coarse = float(np.percentile(spacings[:, worst], 10))
        finest_other = float(max(target[i] for i in others))
        if coarse < finest_other:
            coarse = finest_other + 1e-5
        target[worst] = coarse
    return (float(target[0]), float(target[1]), float(target[2]))


def median_resampled_shape(fp: Fingerprint, spacing: tuple[float, float, float]) -> tuple[int, int, int]:
    """Median over cases of the cropped shape resampled to ``spacing``."""
    shapes = [compute_new_shape(c.shape_after_crop, c.spacing, spacing) for c in fp.cases]
    med = np.median(np.asarray(shapes, dtype=float), axis=0)
    return (int(round(med[0])), int(round(med[1])), int(round(med[2])))


def _ct_statistics(fp: Fingerprint) -> tuple[tuple[float, float], float, float]:
    stats, clipped = fp.foreground_intensity, fp.foreground_intensity_clipped
    if stats is None or clipped is None:
        raise ValueError(
            "CT normalisation needs foreground intensities but no training case has any foreground voxel;"
            " check the ingested gt labels"
        )
    return (stats.p00_5, stats.p99_5), clipped.mean, clipped.std


def _topology(
    spacing: tuple[float, float, float],
    median_shape: tuple[int, int, int],
    cfg: PreprocessConfig,
    max_levels: int,
    spatial_dims: int,
) -> Topology:
    if spatial_dims == 2:
        sp2, med2 = spacing[1:], median_shape[1:]
        if cfg.patch_size is not None:
            topo2 = topology_for_fixed_patch(sp2, cfg.patch_size[1:], max_levels)
        else:
            topo2 = search_patch_size(sp2, med2, cfg.max_patch_voxels, max_levels)
        return Topology(
            num_pool_per_axis=(0, *topo2.num_pool_per_axis),
            strides=[[1, *s] for s in topo2.strides],
            kernel_sizes=[[1, *k] for k in topo2.kernel_sizes],
            patch_size=(1, *topo2.patch_size),
            divisible_by=(1, *topo2.divisible_by),
        )
    if cfg.patch_size is not None:
        return topology_for_fixed_patch(spacing, cfg.patch_size, max_levels)
    return search_patch_size(spacing, median_shape, cfg.max_patch_voxels, max_levels)


#: Auto mode plans a 2D (slice-wise) network when the slice spacing is at least this many times the
#: in-plane spacing (e.g. 6.5 mm slices at 0.7 mm pixels: 9.3), as nnU-Net's ``2d`` configuration.
AUTO_2D_RATIO = 8.0


def choose_spatial_dims(spacing: tuple[float, float, float], ratio: float = AUTO_2D_RATIO) -> tuple[int, str]:
    """2 when the target spacing is strongly anisotropic along z (the slice axis), else 3.

    Args:
        spacing: target spacing ``(z, y, x)`` in mm.
        ratio: z spacing / finest in-plane spacing from which 2D is chosen.

    Returns:
        ``(spatial_dims, reason)``.
    """
    z, inplane = float(spacing[0]), float(min(spacing[1], spacing[2]))
    r = z / inplane
    if r >= ratio and z == max(spacing):
        return 2, f"slice spacing {z:.2f} mm is {r:.1f}x the in-plane {inplane:.2f} mm (>= {ratio}): 2D plan"
    return 3, f"spacing ratio z / in-plane {r:.1f} < {ratio}: 3D plan"


def make_plan(
    fp: Fingerprint, cfg: PreprocessConfig, train_cfg: TrainConfig, spatial_dims: int | None = None
) -> Plan:
    """Plan preprocessing and network topology from a dataset fingerprint.

    Args:
        fp: fingerprint of the labeled cases.
        cfg: preprocessing config (``target_spacing`` / ``patch_size`` override the data-driven values).
        train_cfg: training config; ``filters`` caps the number of resolution levels.
        spatial_dims: 3, or 2 for a slice-wise plan (patch ``(1, y, x)``, kernels/strides 1 on z);
            None = ``cfg.spatial_dims``, and when that is None too the planner decides
            (:func:`choose_spatial_dims`: 2D for strongly anisotropic data).

    Returns:
        The plan (its hash changes whenever any planned value changes).
    """
    if spatial_dims is None:
        spatial_dims = cfg.spatial_dims
    if spatial_dims is not None and spatial_dims not in (2, 3):
        raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}")
    if not train_cfg.filters:
        raise ValueError("train.filters is empty; give at least one filter count per resolution level")
    spacing = (
        tuple(float(s) for s in cfg.target_spacing)
        if cfg.target_spacing is not None
        else target_spacing(fp, cfg.anisotropy_threshold)
    )
    spacing3 = (spacing[0], spacing[1], spacing[2])
    if spatial_dims is None:
        spatial_dims, reason = choose_spatial_dims(spacing3)
        log.info("preprocess.spatial_dims is auto: %s", reason)
    median_shape = median_resampled_shape(fp, spacing3)
    topo = _topology(spacing3, median_shape, cfg, len(train_cfg.filters), spatial_dims)
    is_ct = fp.modality.upper() == "CT"
    clip_range: tuple[float, float] | None = None
    mean: float | None = None
    std: float | None = None
    if is_ct:
        clip_range, mean, std = _ct_statistics(fp)
    channels = channel_normalizations(fp)
    if channels:  # the top level repeats the first channel's normalisation
        first = channels[0]
        is_ct, clip_range, mean, std = (first.normalization == Normalization.CT, first.clip_range,
                                        first.intensity_mean, first.intensity_std)
    if len(fp.modalities) > 1:
        log.warning("mixed modalities %s: planning for the majority %s", fp.modalities, fp.modality)
    observed = {k for c in fp.cases for k, n in c.class_voxels.items() if n > 0}
    max_class = max([0, *fp.label_names.keys(), *observed])
    names = {k: fp.label_names.get(k, f"class_{k}") for k in range(1, max_class + 1)}
    return Plan(
        modality=fp.modality,
        normalization=Normalization.CT if is_ct else Normalization.ZSCORE,
        clip_range=clip_range,
        intensity_mean=mean,
        intensity_std=std,
        target_spacing=spacing3,
        anisotropic_axis=separate_z_axis(fp.median_spacing, spacing3, cfg.anisotropy_threshold),
        anisotropy_threshold=cfg.anisotropy_threshold,
        crop_to_nonzero=True,
        median_shape=median_shape,
        patch_size=(int(topo.patch_size[0]), int(topo.patch_size[1]), int(topo.patch_size[2])),
        spatial_dims=spatial_dims,
        kernel_sizes=topo.kernel_sizes,
        strides=topo.strides,
        filters=list(train_cfg.filters[: topo.levels]),
        num_classes=max(2, max_class + 1),
        label_names=names,
        channels=channels,
    )


def channel_normalizations(fp: Fingerprint) -> list[ChannelNormalization]:
    """Per-channel normalisation of multi-channel data (nnU-Net: CT for a channel named "CT", or for the
    first channel of CT data; z-score per case for every other channel); ``[]`` for single-channel data."""
    out = []
    for k, name in enumerate(fp.channel_names):
        ct = name.upper() == "CT" or (k == 0 and fp.modality.upper() == "CT")
        stats = fp.channel_intensity[k] if k < len(fp.channel_intensity) else None
        clipped = fp.channel_intensity_clipped[k] if k < len(fp.channel_intensity_clipped) else None
        if ct and (stats is None or clipped is None):
            raise ValueError(f"CT normalisation of channel {name} needs foreground intensities but no training "
                             "case has any foreground voxel; check the ingested gt labels")
        out.append(ChannelNormalization(
            name=name,
            normalization=Normalization.CT if ct else Normalization.ZSCORE,
            clip_range=(stats.p00_5, stats.p99_5) if ct and stats else None,
            intensity_mean=clipped.mean if ct and clipped else None,
            intensity_std=clipped.std if ct and clipped else None,
        ))
    return out
