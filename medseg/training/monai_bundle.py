"""Export a medseg model bundle as a MONAI bundle (format and axis convention: :mod:`medseg.io.monai_bundle`).

The MONAI config restates the bundle's plan with MONAI transforms: crop to the nonzero box, the plan's
normalisation (CT: clip + dataset statistics as ``ScaleIntensityRanged``; z-score per case inside the
nonzero voxels as ``NormalizeIntensityd(nonzero=True)``), ``Spacingd`` (cubic spline) to the target
spacing, the plan's DynUNet in a Gaussian sliding window, softmax, ``Invertd`` back to the input grid,
argmax and the largest-component choice the bundle's validation made. Where MONAI's transforms differ
from medseg's own (one spline over all axes instead of separable cubic with a nearest-neighbour
anisotropic axis, the exact target spacing instead of the rounded-shape spacing, z-score statistics over
nonzero voxels instead of the hole-filled nonzero mask), predictions differ at label borders:
``tests/training/test_monai_bundle.py`` measured 99.5 % equal voxels on a CT phantom (docs/EXPORTS.md).

Refused, with the reason: ensemble bundles (a MONAI bundle runs one network; medseg averages the folds'
softmax) and multi-channel bundles (each channel needs its own normalisation and its own input file).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import monai
import nibabel
import numpy as np
import torch

import medseg
from medseg.config import InferConfig
from medseg.io.monai_bundle import BundleInference, inference_config, write_monai_bundle
from medseg.plan import Normalization, Plan
from medseg.training.bundle import ModelBundle, load_bundle
from medseg.training.network import segmenter_kwargs


class UnsupportedExport(ValueError):
    """A bundle this MONAI export cannot express (the message says why)."""


def transposed_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Weights for the transposed network: every convolution kernel's spatial axes reversed.

    A conv weight is ``(out, in, *kernel)`` (transposed conv: ``(in, out, *kernel)``); reversing the kernel
    axes of every layer gives the network that maps a transposed input to the transposed output.
    Norm parameters and biases (1D) are unchanged.
    """
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if value.ndim >= 4:  # 2D/3D conv kernels
            spatial = list(range(2, value.ndim))
            value = value.permute(0, 1, *reversed(spatial))
        out[key] = value.contiguous()
    return out


def monai_network_kwargs(plan: Plan, deep_supervision: bool) -> dict[str, Any]:
    """``DynUNet`` keyword arguments of :func:`segmenter_kwargs` in NIfTI voxel order (JSON-ready)."""
    kw = segmenter_kwargs(plan, deep_supervision)
    rev = [list(reversed(v)) for v in kw["strides"]]
    return {**kw, "kernel_size": [list(reversed(v)) for v in kw["kernel_size"]], "strides": rev,
            "upsample_kernel_size": rev[1:], "norm_name": list(kw["norm_name"]), "act_name": list(kw["act_name"])}


def _check_exportable(bundle: ModelBundle) -> None:
    if bundle.is_ensemble:
        raise UnsupportedExport(
            f"{bundle.path} is a {len(bundle.networks)}-fold ensemble: a MONAI bundle runs one network and "
            "medseg averages the folds' softmax probabilities, which its inference config cannot restate; "
            "export a single-model bundle (trained with train.folds=1)")
    if bundle.plan.in_channels > 1:
        raise UnsupportedExport(
            f"{bundle.path} takes {bundle.plan.in_channels} channels {bundle.plan.channel_names}: each needs its "
            "own normalisation and input file, which this export does not write yet; use medseg infer")


def _spec(bundle: ModelBundle, cfg: InferConfig) -> BundleInference:
    plan = bundle.plan
    deep = bool(bundle.metadata.get("network", {}).get("deep_supervision", False))
    if plan.normalization == Normalization.CT:
        if plan.clip_range is None or plan.intensity_mean is None or plan.intensity_std is None:
            raise UnsupportedExport(f"{bundle.path}: CT plan without clip range / statistics")
        norm: tuple[Any, ...] = ("ct", *plan.clip_range, plan.intensity_mean, max(plan.intensity_std, 1e-8))
    else:
        norm = ("zscore",)
    postprocessing = (bundle.metadata.get("postprocessing") or {}).get("keep_largest_component") or []
    largest = (sorted(int(c) for c in postprocessing) if cfg.keep_largest_component == "auto"
               else sorted(plan.label_names) if cfg.keep_largest_component else [])
    two_d = plan.spatial_dims == 2
    return BundleInference(
        network=monai_network_kwargs(plan, deep),
        pixdim=tuple(float(s) for s in reversed(plan.target_spacing)),
        roi_size=tuple(int(p) for p in reversed(plan.patch_size[1:] if two_d else plan.patch_size)),
        slice_axis=2 if two_d else None,  # medseg's z (slices) is the file's third axis
        crop_to_nonzero=plan.crop_to_nonzero,
        normalization=norm,
        largest_component=tuple(largest),
        overlap=cfg.overlap,
        sw_batch_size=cfg.sw_batch_size,
    )


def _metadata(bundle: ModelBundle, spec: BundleInference) -> dict[str, Any]:
    plan = bundle.plan
    classes = {"0": "background", **{str(k): v for k, v in sorted(plan.label_names.items())}}
    return {
        "version": "1.0.0",
        "changelog": {"1.0.0": f"exported by medseg {medseg.__version__} from {bundle.family} {bundle.version}"},
        "monai_version": monai.__version__,
        "pytorch_version": torch.__version__.split("+")[0],
        "numpy_version": np.__version__,
        "required_packages_version": {"nibabel": nibabel.__version__},
        "name": f"medseg {bundle.family} {bundle.version}",
        "task": f"{plan.modality} segmentation: {', '.join(plan.label_names.values())}",
        "description": "medseg DynUNet (nnU-Net-style plan) as a MONAI bundle; run configs/inference.json",
        "authors": "medseg",
        "copyright": "",
        "network_data_format": {
            "inputs": {"image": {"type": "image", "format": "magnitude", "modality": plan.modality,
                                 "num_channels": 1, "spatial_shape": list(spec.roi_size), "dtype": "float32",
                                 "value_range": [], "is_patch_data": True,
                                 "channel_def": {"0": plan.modality}}},
            "outputs": {"pred": {"type": "image", "format": "segmentation", "num_channels": plan.num_classes,
                                 "spatial_shape": list(spec.roi_size), "dtype": "float32", "value_range": [0, 1],
                                 "is_patch_data": True, "channel_def": classes}},
        },
        "medseg": {"family": bundle.family, "version": bundle.version, "plan_hash": plan.plan_hash(),
                   "target_spacing_zyx": list(plan.target_spacing), "patch_size_zyx": list(plan.patch_size),
                   "axis_order": "NIfTI voxel order (i, j, k) = medseg (x, y, z); kernels, strides, patch and "
                                 "pixdim reversed, convolution kernels' axes reversed"},
    }


def export_monai_bundle(source: Path, out: Path, cfg: InferConfig | None = None, overwrite: bool = False) -> Path:
    """Write the medseg bundle at ``source`` as a MONAI bundle folder ``out``.

    ``cfg`` gives the sliding-window overlap, windows per batch and the largest-component rule (default:
    ``InferConfig()``, as ``medseg infer``). The network is rebuilt by MONAI from ``network_def``; its
    state_dict is medseg's with every kernel's axes reversed (:func:`transposed_state_dict`) and loads 1:1.

    Raises:
        UnsupportedExport: an ensemble or multi-channel bundle (the message says why).
        FileExistsError: ``out`` exists and ``overwrite`` is False.
        medseg.io.bundle.BundleError: ``source`` is not a readable bundle.
    """
    bundle = load_bundle(Path(source))
    _check_exportable(bundle)
    spec = _spec(bundle, cfg or InferConfig())
    state = transposed_state_dict(bundle.network.state_dict())
    return write_monai_bundle(Path(out), inference_config(spec), _metadata(bundle, spec), state, overwrite)
