"""Inference stage: predict native volumes with a model bundle and write label maps (Zarr + NIfTI).

Per case: the bundle's plan preprocesses the native image (crop, normalise, resample), the
segmenter runs as a Gaussian sliding window (optional mirror TTA) that hands out finished z-slabs
of logits, which are interpolated onto the native grid and arg-maxed plane by plane (bounded
memory, see :func:`predict_volume`); where validation chose it, only a class's largest component is kept.
Outputs go to ``predictions/<family>/<version>/<case_id>.{zarr,nii.gz}`` and, for DICOM cases,
``predictions/<family>/<version>/dicom-seg/<study_key>/<case_id>/seg.dcm``; cases already
predicted by the same bundle version are skipped. ``medseg predict`` writes through the same
:func:`write_case_prediction` with its own file names (:class:`~medseg.inference.outputs.CaseOutputs`).
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from numpy.typing import NDArray

from medseg.config import InferConfig, MedsegConfig, ModelFamily
from medseg.geometry import Geometry
from medseg.inference.ensemble import stream_probabilities
from medseg.inference.outputs import CaseOutputs, CaseWritten
from medseg.inference.postprocess import keep_largest_component
from medseg.inference.restore import NativeRestorer
from medseg.inference.selection import has_prediction
from medseg.inference.spill import SpillVolume
from medseg.inference.stream import stream_logits
from medseg.io.case_arrays import PRED_LABEL
from medseg.io.dicom.seg_writer import DicomSourceUnavailable, write_prediction_seg
from medseg.io.nifti import write_nifti
from medseg.io.volume_store import case_writer, open_array, read_meta
from medseg.preprocess.case import case_layout, input_channels, preprocess_image_into
from medseg.preprocess.stream import ArraySource
from medseg.qa.confidence import ConfidenceTally, confidence_source
from medseg.qa.volumes import label_volumes_ml
from medseg.training.bundle import ModelBundle, champion, load_bundle
from medseg.training.device import configure_threads, resolve_device
from medseg.workspace import Workspace

log = logging.getLogger(__name__)

#: ``infer`` settings that place the work, not shape the prediction: left out of a store's ``source.infer``,
#: so the outputs are the same files whatever the layout (medseg.inference.layout)
LAYOUT_SETTINGS: set[str] = {"workers"}
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
    dicom_seg: dict[str, Path] = field(default_factory=dict)
    seconds: float = 0.0
    layout: str = "in-process"  # or "LocalCluster 2 workers", "cluster" (medseg.inference.layout)
    workers: dict[str, str] = field(default_factory=dict)  # case id -> Dask worker that predicted it
    worker_peak_rss_mib: dict[str, float] = field(default_factory=dict)  # Dask worker -> its peak RSS


@contextmanager
def preprocessed_buffer(
    shape: tuple[int, int, int], spill_mib: int, spill_dir: Path | None = None
) -> Iterator[Any]:
    """A float32 ``(z, y, x)`` array for the preprocessed image: numpy, or a temporary raw file on disk.

    Images over ``spill_mib`` MiB go to a raw file (:class:`SpillVolume`) under ``spill_dir`` (default:
    the system temp folder), removed on exit, so a large case never holds its float32 copy in RAM
    (it is read back one window-deep slab at a time by :func:`stream_logits`).
    """
    nbytes = int(np.prod(shape)) * 4
    if nbytes <= spill_mib * 2**20:
        yield np.zeros(shape, dtype=np.float32)
        return
    if spill_dir is not None:
        spill_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".medseg-pre-", dir=spill_dir))
    volume = SpillVolume(tmp / "pre.f32", shape)
    try:
        yield volume
    finally:
        volume.close()
        shutil.rmtree(tmp, ignore_errors=True)


def predict_volume(
    bundle: ModelBundle,
    image_zyx: ArraySource | Sequence[ArraySource],
    geometry: Geometry,
    cfg: InferConfig,
    device: torch.device | str = "cpu",
    spill_dir: Path | None = None,
    confidence: ConfidenceTally | None = None,
) -> NDArray[np.uint8]:
    """Label map ``(z, y, x)`` uint8 on the native grid of ``image_zyx`` (values = the bundle's classes).

    Steps: the bundle's plan crops, normalises and resamples the image (slab by slab; to disk when
    over ``cfg.spill_mib``); :func:`stream_logits` runs the Gaussian sliding window and hands out
    finished z-slabs of logits; :class:`NativeRestorer` interpolates them onto the native grid
    (linear; nearest along the plan's anisotropic axis) and takes the argmax plane by plane (an ensemble
    bundle: of the mean of its members' softmax probabilities, :func:`bundle_scores`);
    classes chosen by :func:`largest_component_classes` keep only their largest component. No
    full-volume float32 logits or probabilities exist at any point (see ``tests/inference/test_memory.py``).

    Args:
        bundle: loaded model bundle (its plan drives the preprocessing).
        image_zyx: native image in scanner units, ``(z, y, x)``: numpy or Zarr array (read by slabs);
            for a multi-channel model, one such array per channel of ``bundle.plan.channel_names``, on one grid.
        geometry: geometry of ``image_zyx``.
        cfg: overlap, windows per batch, mirror TTA, keep_largest_component, spill_mib.
        device: where the network runs (the bundle's network is moved there).
        spill_dir: folder of the temporary on-disk preprocessed image (large cases only).
        confidence: counts the winning probability of the predicted foreground, slab by slab (QA).
    """
    plan = bundle.plan
    channels: list[ArraySource] = (
        list(image_zyx) if isinstance(image_zyx, list | tuple) else [cast(ArraySource, image_zyx)]
    )
    if len(channels) != plan.in_channels:
        raise ValueError(f"the model takes {plan.in_channels} input channel(s) {plan.channel_names or ''}, "
                         f"got {len(channels)} image(s)")
    dev = torch.device(device)
    bundle.to(dev)
    layout = case_layout(channels[0], geometry, plan)  # the first channel's crop applies to all of them
    native = tuple(int(s) for s in channels[0].shape)
    label = np.zeros(native, dtype=np.uint8)
    with ExitStack() as stack:
        pres = [stack.enter_context(preprocessed_buffer(layout.new_shape, cfg.spill_mib, spill_dir)) for _ in channels]
        for k, (channel, pre) in enumerate(zip(channels, pres, strict=True)):
            preprocess_image_into(channel, layout, plan.for_channel(k), pre)
        restorer = NativeRestorer(layout.new_shape, layout.crop_bbox, label, layout.anisotropic_axis)
        for z0, scores in bundle_scores(bundle, pres if len(pres) > 1 else pres[0], cfg, dev):
            restorer.feed(z0, scores)
            if confidence is not None:
                confidence.feed(scores)
    if not restorer.done:
        raise RuntimeError(f"inference produced an incomplete label map (shape {native}); this is a bug")
    classes = largest_component_classes(bundle, cfg)
    if classes:
        keep_largest_component(label, classes)
    return label


def bundle_scores(
    bundle: ModelBundle, image: ArraySource | Sequence[ArraySource], cfg: InferConfig, device: torch.device
) -> Iterator[tuple[int, NDArray[np.float32]]]:
    """Finished z-slabs of class scores on the preprocessed grid: a single model's blended logits, or
    the mean softmax probabilities of an ensemble's members (:func:`stream_probabilities`).

    Both go through the same restorer and argmax; for one model the argmax of the logits is the
    argmax of its softmax.
    """
    if bundle.is_ensemble:
        return stream_probabilities(bundle.networks, image, bundle.plan, cfg, device)
    return stream_logits(bundle.network, image, bundle.plan, cfg, device)


def largest_component_classes(bundle: ModelBundle, cfg: InferConfig) -> list[int]:
    """Classes reduced to their largest component: all (true), none (false) or the bundle's choice (auto)."""
    if cfg.keep_largest_component == "auto":
        chosen = (bundle.metadata.get("postprocessing") or {}).get("keep_largest_component") or []
        return sorted(int(c) for c in chosen)
    return sorted(bundle.plan.label_names) if cfg.keep_largest_component else []


def _write_nifti(path: Path, array: NDArray[Any], geometry: Geometry) -> None:
    """NIfTI with the source affine (``geometry.nifti_affine()``), written atomically."""
    tmp = path.with_name(f".{path.name}.tmp.nii.gz")
    write_nifti(tmp, array, geometry)
    tmp.replace(path)


def _write_prediction_store(
    path: Path,
    case_id: str,
    image: ArraySource,
    geometry: Geometry,
    label: NDArray[np.uint8],
    label_names: dict[int, str],
    source: dict[str, Any],
) -> None:
    """OME-Zarr store: the source image (copied slab by slab) + ``labels/pred``; appears atomically."""
    shape = (int(image.shape[0]), int(image.shape[1]), int(image.shape[2]))
    dtype = getattr(image, "dtype", np.int16)
    with case_writer(
        path, case_id, shape, dtype, geometry, labels=[PRED_LABEL], label_names=label_names,
        source=source, kind="prediction",
    ) as writer:
        step = int(writer.image.chunks[0])
        for z0 in range(0, shape[0], step):
            writer.image[z0 : z0 + step] = np.asarray(image[z0 : z0 + step])
        writer.labels[PRED_LABEL][...] = label


def already_predicted(out_dir: Path, case_id: str, family: str, version: str) -> bool:
    """The case's NIfTI and its complete prediction store of ``family``/``version`` are in ``out_dir``."""
    return (out_dir / f"{case_id}.nii.gz").is_file() and has_prediction(out_dir, case_id, family, version)


def predict_case(
    ws: Workspace,
    cfg: MedsegConfig,
    bundle: ModelBundle,
    case_id: str,
    out_dir: Path,
    device: torch.device,
) -> Path | None:
    """Predict one ingested case into the workspace layout of ``out_dir``; returns the DICOM SEG path (or None).

    Outputs, in this order (the Zarr store, written last, marks the case as done):
    ``<case_id>.nii.gz`` (source affine), ``dicom-seg/<study_key>/<case_id>/seg.dcm`` (when
    ``cfg.infer.dicom_seg`` and the case came from DICOM; otherwise skipped with a logged reason),
    ``<case_id>.zarr`` (image + ``labels/pred``; ``source`` records the model family and version).
    """
    outputs = CaseOutputs.in_folder(out_dir, case_id, cfg.infer.dicom_seg)
    return write_case_prediction(ws, cfg, bundle, case_id, outputs, device).seg_file


def write_case_prediction(
    ws: Workspace,
    cfg: MedsegConfig,
    bundle: ModelBundle,
    case_id: str,
    outputs: CaseOutputs,
    device: torch.device,
) -> CaseWritten:
    """Predict one ingested case (``ws.volume_path(case_id)``) and write the outputs ``outputs`` names.

    The one prediction path of ``medseg infer`` (workspace layout, :func:`predict_case`) and
    ``medseg predict`` (files named after the study). Order: NIfTI (source affine), DICOM SEG
    (DICOM sources only: otherwise skipped, and the reason is logged and returned), Zarr store last.

    Raises:
        MissingChannelError: the case lacks an input channel of the model (nothing is written).
    """
    volume = ws.volume_path(case_id)
    meta = read_meta(volume)
    geometry = Geometry.from_dict(meta["geometry"])
    image = open_array(volume, "0")
    channels = input_channels(volume, bundle.plan)  # names a missing channel (MissingChannelError)
    tally = ConfidenceTally(probabilities=bundle.is_ensemble)
    label = predict_volume(bundle, channels, geometry, cfg.infer, device, spill_dir=outputs.folder, confidence=tally)
    confidence = tally.result()
    label_names = {int(k): str(v) for k, v in bundle.plan.label_names.items()}
    files: list[Path] = []
    if outputs.nifti is not None:
        outputs.nifti.parent.mkdir(parents=True, exist_ok=True)
        _write_nifti(outputs.nifti, label, geometry)
        files.append(outputs.nifti)
    seg_file: Path | None = None
    seg_note = "not requested (infer.dicom_seg=false, or not in medseg predict --format)"
    if outputs.dicom_seg:
        try:
            seg_file = write_prediction_seg(ws.catalog_path, outputs.folder, case_id, label, geometry, label_names,
                                            bundle.family, bundle.version, path=outputs.seg_file)
            seg_note = str(seg_file)
            files.append(seg_file)
        except DicomSourceUnavailable as exc:
            seg_note = f"skipped: {exc}"
            log.info("no DICOM SEG for case %s: %s", case_id, exc)
    if outputs.zarr is not None:
        source = {
            "model_family": bundle.family,
            "model_version": bundle.version,
            "model": {"family": bundle.family, "version": bundle.version},
            "bundle": str(bundle.path),
            "plan_hash": bundle.plan.plan_hash(),
            "input_volume": str(volume),
            **({"channel_names": bundle.plan.channel_names} if bundle.plan.channel_names else {}),
            "infer": cfg.infer.model_dump(mode="json", exclude=LAYOUT_SETTINGS),
            "dicom_seg": seg_note,
            **confidence_source(confidence),
        }
        outputs.zarr.parent.mkdir(parents=True, exist_ok=True)
        _write_prediction_store(outputs.zarr, case_id, image, geometry, label, label_names, source)
        files.append(outputs.zarr)
    return CaseWritten(files=files, seg_file=seg_file, seg_note=seg_note, confidence=confidence,
                       volumes_ml=label_volumes_ml(label, geometry.spacing, label_names))


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
        cfg: ``cfg.infer`` (overlap, sw_batch_size, mirror_tta, keep_largest_component, dicom_seg,
            spill_mib) and ``cfg.train.device/num_threads``.
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
        t0 = time.perf_counter()
        status = "predicted"
        if already_predicted(out_dir, case_id, family, bundle.version):
            summary.skipped.append(case_id)
            status = "skipped"
        else:
            try:
                seg_file = predict_case(ws, cfg, bundle, case_id, out_dir, device)
                if seg_file is not None:
                    summary.dicom_seg[case_id] = seg_file
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
