"""MONAI bundle folders: the one writer (``medseg export-model --format monai-bundle``).

Layout (the MONAI bundle specification, run with ``python -m monai.bundle run --config_file
<bundle>/configs/inference.json --dataset_dir IMAGES --output_dir OUT``)::

    configs/metadata.json     versions (monai, pytorch, numpy, nibabel), task, network_data_format
                              (input image, output classes), and a ``medseg`` section (source bundle,
                              plan hash, axis convention)
    configs/inference.json    LoadImaged → EnsureChannelFirstd → CropForegroundd (nonzero) → intensity
                              normalisation → Spacingd (cubic spline) → sliding window (Gaussian) → softmax
                              → Invertd back to the input grid → argmax → largest component → SaveImaged
    models/model.pt           state_dict of ``network_def`` (``torch.save``)

**Axes.** MONAI reads a NIfTI image in its voxel order ``(i, j, k)``, the reverse of medseg's ``(z, y, x)``
(medseg stores ``array.transpose(2, 1, 0)``), and this config does not reorient. So everything the
network sees is medseg's input transposed: the pixdims, patch, kernel sizes and strides are medseg's
reversed, and the caller (:mod:`medseg.training.monai_bundle`) gives the weights with their kernel axes
reversed to match; the network is then medseg's network, transposed.

No expression needs anything beyond MONAI, PyTorch and nibabel (no pytorch-ignite: the run loop is a
plain expression, ``evaluator``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from medseg.io.folder_write import folder_written_whole

CONFIGS = "configs"
MODELS = "models"
INFERENCE_JSON = "inference.json"
METADATA_JSON = "metadata.json"
MODEL_PT = "model.pt"


@dataclass(frozen=True)
class BundleInference:
    """What the inference config needs, already in MONAI's (NIfTI voxel) axis order.

    Attributes:
        network: keyword arguments of ``monai.networks.nets.DynUNet``.
        pixdim: target voxel size (mm) along the file's voxel axes.
        roi_size: sliding-window patch (2D plans: the in-plane patch, one slice at a time along ``slice_axis``).
        slice_axis: spatial axis the 2D network slides over (None: a 3D network).
        crop_to_nonzero: crop to the nonzero box of the image before normalising (as the plan).
        normalization: ``("ct", lo, hi, mean, std)`` or ``("zscore",)``.
        largest_component: classes reduced to their largest 26-connected component.
        overlap, sw_batch_size: sliding-window settings.
    """

    network: dict[str, Any]
    pixdim: tuple[float, ...]
    roi_size: tuple[int, ...]
    slice_axis: int | None
    crop_to_nonzero: bool
    normalization: tuple[Any, ...]
    largest_component: tuple[int, ...]
    overlap: float
    sw_batch_size: int


def _normalisation(n: tuple[Any, ...]) -> dict[str, Any]:
    if n[0] == "ct":  # clip to [lo, hi], then (x - mean) / std: one affine map with clipping
        _, lo, hi, mean, std = n
        return {"_target_": "ScaleIntensityRanged", "keys": "image", "a_min": lo, "a_max": hi,
                "b_min": (lo - mean) / std, "b_max": (hi - mean) / std, "clip": True}
    return {"_target_": "NormalizeIntensityd", "keys": "image", "nonzero": True}


def inference_config(spec: BundleInference) -> dict[str, Any]:
    """The ``configs/inference.json`` document of :class:`BundleInference` (layout: module docstring)."""
    pre: list[dict[str, Any]] = [
        {"_target_": "LoadImaged", "keys": "image", "image_only": True},
        {"_target_": "EnsureChannelFirstd", "keys": "image"},
    ]
    if spec.crop_to_nonzero:
        pre.append({"_target_": "CropForegroundd", "keys": "image", "source_key": "image",
                    "select_fn": "$lambda x: x != 0", "margin": 0, "allow_smaller": True})
    pre += [
        _normalisation(spec.normalization),
        {"_target_": "Spacingd", "keys": "image", "pixdim": list(spec.pixdim), "mode": 3},  # cubic spline
        {"_target_": "EnsureTyped", "keys": "image", "dtype": "$torch.float32"},
    ]
    window = {"roi_size": list(spec.roi_size), "sw_batch_size": spec.sw_batch_size, "overlap": spec.overlap,
              "mode": "gaussian", "sigma_scale": 0.125, "padding_mode": "constant", "cval": 0.0}
    inferer = ({"_target_": "SlidingWindowInferer", **window} if spec.slice_axis is None
               else {"_target_": "SliceInferer", "spatial_dim": spec.slice_axis, **window})
    post: list[dict[str, Any]] = [
        {"_target_": "Activationsd", "keys": "pred", "softmax": True},
        {"_target_": "Invertd", "keys": "pred", "transform": "@preprocessing", "orig_keys": "image",
         "nearest_interp": False, "to_tensor": True},
        {"_target_": "AsDiscreted", "keys": "pred", "argmax": True},
    ]
    if spec.largest_component:
        post.append({"_target_": "KeepLargestConnectedComponentd", "keys": "pred",
                     "applied_labels": list(spec.largest_component), "is_onehot": False, "independent": True,
                     "connectivity": 3})
    post.append({"_target_": "SaveImaged", "keys": "pred", "output_dir": "@output_dir", "output_postfix": "seg",
                 "output_dtype": "$np.uint8", "resample": False, "separate_folder": False})
    return {
        "imports": ["$import glob", "$import os"],
        "bundle_root": ".",
        "output_dir": "$@bundle_root + '/eval'",
        "dataset_dir": "$@bundle_root + '/images'",
        "datalist": "$list(sorted(glob.glob(os.path.join(@dataset_dir, '*.nii*'))))",
        "device": "$torch.device('cuda' if torch.cuda.is_available() else 'cpu')",
        "network_def": {"_target_": "DynUNet", **spec.network},
        "network": "$@network_def.to(@device)",
        "preprocessing": {"_target_": "Compose", "transforms": pre},
        "dataset": {"_target_": "Dataset", "data": "$[{'image': f} for f in @datalist]",
                    "transform": "@preprocessing"},
        "inferer": inferer,
        "postprocessing": {"_target_": "Compose", "transforms": post},
        "predict": "$lambda d: @postprocessing(dict(d, pred=monai.data.MetaTensor(@inferer(d['image'][None]"
                   ".to(@device), @network)[0].cpu())))",
        "evaluator": "$lambda: [@predict(d) for d in @dataset]",
        "initialize": [
            "$@network.load_state_dict(torch.load(os.path.join(@bundle_root, 'models', 'model.pt'), "
            "map_location=@device, weights_only=True))",
            "$@network.eval()",
            "$torch.set_grad_enabled(False)",
        ],
        "run": ["$@evaluator()"],
        "finalize": ["$torch.set_grad_enabled(True)"],
    }


def write_monai_bundle(
    root: Path,
    inference: dict[str, Any],
    metadata: dict[str, Any],
    state_dict: dict[str, torch.Tensor],
    overwrite: bool = False,
) -> Path:
    """Write a MONAI bundle folder at ``root``; it appears whole or not at all (hidden sibling, then rename).

    Raises:
        FileExistsError: ``root`` exists and ``overwrite`` is False.
    """
    root = Path(root)
    if root.exists() and not overwrite:
        raise FileExistsError(f"{root} exists: choose a new folder or overwrite it (medseg export-model --force)")
    with folder_written_whole(root) as tmp:
        (tmp / CONFIGS).mkdir()
        (tmp / MODELS).mkdir()
        (tmp / CONFIGS / INFERENCE_JSON).write_text(json.dumps(inference, indent=2) + "\n", encoding="utf-8")
        (tmp / CONFIGS / METADATA_JSON).write_text(json.dumps(metadata, indent=2) + "\n", encoding="utf-8")
        torch.save({k: v.detach().cpu().contiguous() for k, v in state_dict.items()}, tmp / MODELS / MODEL_PT)
    return root
