"""Inference stage: predict native volumes with a model bundle and write label maps (Zarr + NIfTI).

Per case: the bundle's plan preprocesses the native image (crop, normalise, resample), the
segmenter runs as a Gaussian sliding window (optional mirror TTA), argmax gives labels, which are
mapped back to the native grid. Outputs go to ``predictions/<family>/<version>/<case_id>.{zarr,nii.gz}``;
cases already predicted by the same bundle version are skipped.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray

from medseg.config import InferConfig, MedsegConfig, ModelFamily
from medseg.geometry import Geometry
from medseg.inference.sliding import predict_preprocessed
from medseg.io.volume_store import CaseVolume, is_complete, read_case, read_meta, write_case
from medseg.training.bundle import ModelBundle, champion, load_bundle
from medseg.training.device import configure_threads, resolve_device
from medseg.workspace import Workspace

log = logging.getLogger(__name__)

PRED_LABEL = "pred"
Progress = Callable[[dict[str, Any]], None]


@dataclass
class InferSummary:
    """What :func:`run_inference` did."""

    family: str
    version: str
    bundle_path: Path
    output_dir: Path
    predicted: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    case_seconds: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0


def _preprocess_api() -> tuple[Callable[..., Any], Callable[..., NDArray[np.uint8]]]:
    """``(preprocess_image, restore_labels_to_native)`` of :mod:`medseg.preprocess.case`.

    Imported here (not at module level) so tests can substitute them.
    """
    from medseg.preprocess.case import preprocess_image, restore_labels_to_native

    return preprocess_image, restore_labels_to_native


def predict_volume(
    bundle: ModelBundle,
    image_zyx: NDArray[Any],
    geometry: Geometry,
    cfg: InferConfig,
    device: torch.device | str = "cpu",
) -> NDArray[np.uint8]:
    """Label map ``(z, y, x)`` uint8 on the native grid of ``image_zyx`` (values = the bundle's classes).

    Args:
        bundle: loaded model bundle (its plan drives the preprocessing).
        image_zyx: native image in scanner units, ``(z, y, x)``.
        geometry: geometry of ``image_zyx``.
        cfg: sliding-window overlap, windows per batch and mirror TTA.
        device: where to run the network (the bundle's network is moved there).
    """
    preprocess_image, restore_labels_to_native = _preprocess_api()
    pre = preprocess_image(image_zyx, geometry, bundle.plan)
    dev = torch.device(device)
    bundle.network.to(dev)
    probs = predict_preprocessed(bundle.network, pre.data, bundle.plan, cfg, dev)
    label_pre = probs.argmax(axis=0).astype(np.uint8)
    label = restore_labels_to_native(label_pre, pre)
    if label.shape != image_zyx.shape:
        raise RuntimeError(f"restored label shape {label.shape} != native image shape {image_zyx.shape}")
    return label


def _write_nifti(path: Path, array: NDArray[Any], geometry: Geometry) -> None:
    try:
        from medseg.io.nifti import write_nifti
    except ImportError:  # colleague's module missing: plain nibabel, same convention
        import nibabel as nib

        tmp = path.with_name(f".{path.name}.tmp.nii.gz")
        nib.save(nib.Nifti1Image(np.asarray(array).transpose(2, 1, 0), geometry.nifti_affine()), str(tmp))
        tmp.replace(path)
        return
    tmp = path.with_name(f".{path.name}.tmp.nii.gz")
    write_nifti(tmp, array, geometry)
    tmp.replace(path)


def _already_done(zarr_path: Path, nii_path: Path, family: str, version: str) -> bool:
    if not (is_complete(zarr_path) and nii_path.is_file()):
        return False
    source = read_meta(zarr_path).get("source", {})
    return bool(source.get("model_family") == family and source.get("model_version") == version)


def run_inference(
    ws: Workspace,
    cfg: MedsegConfig,
    family: ModelFamily | str,
    case_ids: list[str],
    bundle_path: Path | None = None,
    progress: Progress | None = None,
) -> InferSummary:
    """Predict ``case_ids`` (native stores ``ws.volume_path(case_id)``) with a bundle of ``family``.

    Args:
        ws: workspace.
        cfg: ``cfg.infer`` (overlap, sw_batch_size, mirror_tta) and ``cfg.train.device/num_threads``.
        family: "cnn" or "gan".
        case_ids: cases to predict.
        bundle_path: bundle to use; None = the family's champion.
        progress: called with ``{"event": "case", "case_id", "status", "seconds", "done", "total"}``.

    Returns:
        InferSummary; a case that fails is reported in ``failed`` (the others still run).

    Raises:
        FileNotFoundError: no bundle given and the family has no champion.
    """
    family = str(ModelFamily(str(family)))
    start = time.perf_counter()
    if bundle_path is None:
        bundle_path = champion(ws, family)
        if bundle_path is None:
            raise FileNotFoundError(
                f"no champion model for family {family!r} in {ws.model_family_dir(family)}; "
                "run `medseg train` first or pass a bundle path"
            )
    configure_threads(cfg.train)
    device = resolve_device(cfg.train.device)
    bundle = load_bundle(bundle_path, device=device)
    out_dir = ws.prediction_dir(family, bundle.version)
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = InferSummary(family=family, version=bundle.version, bundle_path=Path(bundle_path), output_dir=out_dir)
    emit = progress or (lambda _e: None)
    for n, case_id in enumerate(case_ids, start=1):
        zarr_path, nii_path = out_dir / f"{case_id}.zarr", out_dir / f"{case_id}.nii.gz"
        t0 = time.perf_counter()
        status = "predicted"
        if _already_done(zarr_path, nii_path, family, bundle.version):
            summary.skipped.append(case_id)
            status = "skipped"
        else:
            try:
                case = read_case(ws.volume_path(case_id), labels=False)
                label = predict_volume(bundle, case.image, case.geometry, cfg.infer, device)
                write_case(
                    zarr_path,
                    CaseVolume(
                        case_id=case_id,
                        image=case.image,
                        geometry=case.geometry,
                        labels={PRED_LABEL: label},
                        label_names=dict(bundle.plan.label_names),
                        kind="volume",
                        source={
                            "model_family": family,
                            "model_version": bundle.version,
                            "bundle": str(bundle.path),
                            "plan_hash": bundle.plan.plan_hash(),
                            "input_volume": str(ws.volume_path(case_id)),
                            "infer": cfg.infer.model_dump(mode="json"),
                        },
                    ),
                )
                _write_nifti(nii_path, label, case.geometry)
                summary.predicted.append(case_id)
                summary.case_seconds[case_id] = time.perf_counter() - t0
            except Exception as exc:  # one bad case must not stop the batch; it is reported
                log.exception("inference failed for case %s", case_id)
                summary.failed[case_id] = f"{type(exc).__name__}: {exc}"
                status = "failed"
        emit(
            {
                "event": "case",
                "case_id": case_id,
                "status": status,
                "seconds": time.perf_counter() - t0,
                "done": n,
                "total": len(case_ids),
            }
        )
    summary.seconds = time.perf_counter() - start
    return summary
