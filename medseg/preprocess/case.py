"""Per-case preprocessing (crop -> normalise -> resample) and its inverse; shared by training and inference.

Inference calls :func:`preprocess_image`, predicts on ``pre.data``, then maps the prediction back with
:func:`restore_labels_to_native` or :func:`restore_probabilities_to_native`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel

from medseg.geometry import Geometry
from medseg.io.case_arrays import (
    GT_LABEL,
    channel_names,
    label_volume_names,
    open_channels,
    open_image,
    open_label,
    write_foreground_locations,
)
from medseg.io.volume_store import case_writer, read_case, read_meta
from medseg.plan import Normalization, Plan
from medseg.preprocess.crop import BBox, bbox_shape, bbox_slices, full_bbox
from medseg.preprocess.foreground import MAX_PER_CLASS, sample_foreground_locations
from medseg.preprocess.resample import compute_new_shape, resample_to_shape, separate_z_axis
from medseg.preprocess.source import case_seed, source_hash
from medseg.preprocess.stream import (
    ArraySink,
    ArraySource,
    ResamplePlan,
    SlabReader,
    filled_mask,
    label_values,
    make_normaliser,
    max_label,
    nonzero_bbox,
    resample_image_into,
    resample_labels_stream,
)

Shape3 = tuple[int, int, int]


@dataclass(frozen=True)
class PreprocessedImage:
    """A case on the plan's grid, plus what is needed to map predictions back to the native grid.

    Attributes:
        data: float32 ``(z, y, x)`` normalised image at (about) ``plan.target_spacing``.
        geometry: geometry of ``data`` (origin shifted by the crop; spacing = the exact spacing of
            the resampled grid, which differs from the target by the rounding of the shape).
        crop_bbox: half-open native voxel ranges ``((z0, z1), (y0, y1), (x0, x1))`` that were kept.
        native_shape: shape of the native image.
        native_geometry: geometry of the native image.
        anisotropic_axis: axis resampled with nearest neighbour (separate z), if any.
    """

    data: NDArray[np.float32]
    geometry: Geometry
    crop_bbox: BBox
    native_shape: Shape3
    native_geometry: Geometry
    anisotropic_axis: int | None

    @property
    def cropped_shape(self) -> Shape3:
        """Native-resolution shape of the cropped region."""
        return bbox_shape(self.crop_bbox)


def _grid_geometry(native: Geometry, bbox: BBox, cropped: Shape3, new_shape: Shape3) -> Geometry:
    """Geometry of an extent-aligned resampling of the native region ``bbox`` to ``new_shape``."""
    scale = np.asarray(cropped, dtype=float) / np.asarray(new_shape, dtype=float)
    first_centre = np.asarray([b[0] for b in bbox], dtype=float) + 0.5 * scale - 0.5
    spacing = np.asarray(native.spacing) * scale
    origin = native.index_to_lps(first_centre)
    return Geometry.create(spacing=spacing, origin=origin, direction=native.direction_matrix)


def _shape3(shape: tuple[int, ...]) -> Shape3:
    return (int(shape[0]), int(shape[1]), int(shape[2]))


@dataclass(frozen=True)
class CaseLayout:
    """Where a native volume goes on the plan grid (decided before any voxel is resampled)."""

    native_shape: Shape3
    crop_bbox: BBox
    new_shape: Shape3
    anisotropic_axis: int | None
    geometry: Geometry
    mask: NDArray[np.bool_] | None = None  # ZSCORE only: filled nonzero mask of the crop

    @property
    def resample_plan(self) -> ResamplePlan:
        return ResamplePlan(bbox_shape(self.crop_bbox), self.new_shape, self.anisotropic_axis)


def case_layout(src: ArraySource, geometry: Geometry, plan: Plan) -> CaseLayout:
    """Crop box (nonzero, holes filled), output shape and geometry of a native image ``(z, y, x)``.

    Reads ``src`` slab by slab (a Zarr array is never loaded whole). The output spacing is
    ``native_spacing * cropped / new_shape`` with ``new_shape = round(cropped * native / target)``,
    so it differs from ``plan.target_spacing`` by the rounding only: ``|s - t| <= t * 0.5 / new``.
    """
    if len(src.shape) != 3:
        raise ValueError(f"image must be 3D (z, y, x), got shape {tuple(src.shape)}")
    native_shape = _shape3(tuple(src.shape))
    bbox = nonzero_bbox(src) if plan.crop_to_nonzero else full_bbox(native_shape)
    mask = filled_mask(src, bbox) if plan.normalization == Normalization.ZSCORE else None
    cropped = bbox_shape(bbox)
    axis = separate_z_axis(geometry.spacing, plan.target_spacing, plan.anisotropy_threshold)
    new_shape = _shape3(compute_new_shape(cropped, geometry.spacing, plan.target_spacing))
    return CaseLayout(
        native_shape=native_shape,
        crop_bbox=bbox,
        new_shape=new_shape,
        anisotropic_axis=axis,
        geometry=_grid_geometry(geometry, bbox, cropped, new_shape),
        mask=mask,
    )


def preprocess_image_into(src: ArraySource, layout: CaseLayout, plan: Plan, sink: ArraySink) -> None:
    """Crop, normalise and resample ``src`` into ``sink`` (shape ``layout.new_shape``), slab by slab."""
    reader = SlabReader(src, layout.crop_bbox)
    normalise, _ = make_normaliser(plan, reader, layout.mask)
    resample_image_into(reader, layout.resample_plan, normalise, layout.mask, sink)


def preprocess_image(image_zyx: NDArray[Any], geometry: Geometry, plan: Plan) -> PreprocessedImage:
    """Crop to nonzero, normalise (nnU-Net order: before resampling), resample to the plan spacing.

    Same arithmetic as :func:`preprocess_case` (bit-identical output), in memory.

    Args:
        image_zyx: native image ``(z, y, x)`` (int16 / float32, scanner units).
        geometry: its geometry.
        plan: the plan.

    Returns:
        The preprocessed image and its mapping back to the native grid.
    """
    if image_zyx.ndim != 3:
        raise ValueError(f"image must be 3D (z, y, x), got shape {image_zyx.shape}")
    layout = case_layout(image_zyx, geometry, plan)
    data = np.empty(layout.new_shape, dtype=np.float32)
    preprocess_image_into(image_zyx, layout, plan, data)
    return PreprocessedImage(
        data=data,
        geometry=layout.geometry,
        crop_bbox=layout.crop_bbox,
        native_shape=layout.native_shape,
        native_geometry=geometry,
        anisotropic_axis=layout.anisotropic_axis,
    )


def _labels_on_grid(
    labels: ArraySource, crop_bbox: BBox, new_shape: Shape3, axis: int | None, classes: list[int] | None = None
) -> NDArray[np.uint8]:
    """Resample the crop of a label map; ``classes`` = the values to interpolate (default: up to its max)."""
    reader = SlabReader(labels, crop_bbox)
    rp = ResamplePlan(bbox_shape(crop_bbox), new_shape, axis)
    if classes is None:
        classes = list(range(1, max_label(reader) + 1))
    return resample_labels_stream(reader, rp, classes)


def preprocess_labels(labels_zyx: NDArray[Any], pre: PreprocessedImage) -> NDArray[np.uint8]:
    """Crop and resample a native label map exactly like the image of ``pre`` (one-hot linear)."""
    if labels_zyx.shape != pre.native_shape:
        raise ValueError(f"labels shape {labels_zyx.shape} != native image shape {pre.native_shape}")
    return _labels_on_grid(labels_zyx, pre.crop_bbox, _shape3(pre.data.shape), pre.anisotropic_axis)


def restore_labels_to_native(label_pre: NDArray[Any], pre: PreprocessedImage) -> NDArray[np.uint8]:
    """Map a label map on the preprocessed grid back to the native grid (nearest; 0 outside the crop).

    Args:
        label_pre: uint8 ``(z, y, x)`` with the shape of ``pre.data``.
        pre: the preprocessing record of the case.

    Returns:
        uint8 array of shape ``pre.native_shape``.
    """
    if label_pre.shape != pre.data.shape:
        raise ValueError(f"label shape {label_pre.shape} != preprocessed shape {pre.data.shape}")
    out = np.zeros(pre.native_shape, dtype=np.uint8)
    out[bbox_slices(pre.crop_bbox)] = resample_to_shape(np.asarray(label_pre, np.uint8), pre.cropped_shape, 0)
    return out


def restore_probabilities_to_native(prob_czyx: NDArray[Any], pre: PreprocessedImage) -> NDArray[np.float32]:
    """Map class probabilities ``(c, z, y, x)`` on the preprocessed grid back to the native grid.

    Each class is resampled linearly on its own (memory: one native volume per class plus one
    temporary). Outside the crop, background (class 0) has probability 1.

    Returns:
        float32 ``(c, *pre.native_shape)``.
    """
    if prob_czyx.ndim != 4 or prob_czyx.shape[1:] != pre.data.shape:
        raise ValueError(f"probabilities shape {prob_czyx.shape} != (c, *{pre.data.shape})")
    out = np.zeros((prob_czyx.shape[0], *pre.native_shape), dtype=np.float32)
    out[0] = 1.0
    region = bbox_slices(pre.crop_bbox)
    for c in range(prob_czyx.shape[0]):
        out[c][region] = resample_to_shape(np.asarray(prob_czyx[c]), pre.cropped_shape, order=1)
    return out


def load_preprocessed_image(path: Path) -> PreprocessedImage:
    """Rebuild the :class:`PreprocessedImage` of a preprocessed store (to map its arrays back to native).

    Raises:
        ValueError: the store was not written by :func:`preprocess_case`.
    """
    case = read_case(Path(path), labels=False)
    src = case.source
    missing = [k for k in ("crop_bbox", "native_shape", "native_geometry") if k not in src]
    if case.kind != "preprocessed" or missing:
        raise ValueError(f"{path} is not a preprocessed store (kind={case.kind!r}, missing {missing})")
    b = [(int(lo), int(hi)) for lo, hi in src["crop_bbox"]]
    return PreprocessedImage(
        data=np.asarray(case.image, dtype=np.float32),
        geometry=case.geometry,
        crop_bbox=(b[0], b[1], b[2]),
        native_shape=_shape3(tuple(src["native_shape"])),
        native_geometry=Geometry.from_dict(src["native_geometry"]),
        anisotropic_axis=src.get("anisotropic_axis"),
    )


class CaseResult(BaseModel):
    """What :func:`preprocess_case` did for one case."""

    case_id: str
    out_path: str
    shape: Shape3
    native_shape: Shape3
    fg_counts: dict[int, int]
    seconds: float


class MissingChannelError(ValueError):
    """A case lacks an input channel of the plan (or model); the message names the case and the channels."""


def input_channels(volume_path: Path, plan: Plan) -> list[Any]:
    """The arrays of ``plan.channel_names`` in a store, in plan order (``[image]`` for a single-channel plan).

    Raises:
        MissingChannelError: the store lacks a channel of the plan, or its channels differ from the plan's.
    """
    required, have = plan.channel_names, channel_names(volume_path)
    if required == have:
        return open_channels(volume_path)
    if required and set(required) <= set(have):  # other order, or extra channels the plan does not use
        arrays = open_channels(volume_path)
        return [arrays[have.index(n)] for n in required]
    missing = [n for n in required if n not in have]
    what = f"channel(s) {', '.join(missing)}" if missing else f"channels {have} instead of one image"
    raise MissingChannelError(
        f"{volume_path}: the case lacks {what}; the plan/model needs the input channels "
        f"{required or ['(one unnamed image)']} and the case has {have or ['(one unnamed image)']}. Ingest the "
        "study with the same ingest.channels rules as the training data (every channel present)"
    )


def _chunks(patch_size: tuple[int, int, int], shape: Shape3) -> Shape3:
    return (
        max(1, min(patch_size[0], shape[0])),
        max(1, min(patch_size[1], shape[1])),
        max(1, min(patch_size[2], shape[2])),
    )


def preprocess_case(volume_path: Path, out_path: Path, plan: Plan, src_hash: str | None = None) -> CaseResult:
    """Preprocess one ingested labeled store into a ``kind="preprocessed"`` store at ``out_path``.

    The output has image ``0`` (float32, normalised, plan grid), ``labels/gt`` (uint8, same classes),
    chunks of the patch size, ``fg/<class>`` foreground samples (see
    :mod:`medseg.preprocess.foreground`) and ``source`` attrs ``{source_hash, plan_hash, crop_bbox,
    native_shape, native_geometry, anisotropic_axis, fg_classes, source_case}``.

    Memory: the source is read chunk slab by chunk slab and the image is written z-chunk by
    z-chunk (see :mod:`medseg.preprocess.stream`); the working set depends on the slice size, not
    on the number of slices, plus the uint8 output labels (and a bool mask for ZSCORE). Measured:
    a 1000 x 512 x 512 int16 CT (500 MiB) peaks at ~0.8 GiB RSS (``bench/preprocess_memory.py``).
    The store appears atomically (temporary name + rename).
    """
    start = time.perf_counter()
    volume_path, out_path = Path(volume_path), Path(out_path)
    meta = read_meta(volume_path)
    case_id = str(meta["case_id"])
    if GT_LABEL not in label_volume_names(volume_path):
        raise ValueError(f"{volume_path}: no '{GT_LABEL}' label volume; only labeled cases are preprocessed")
    image = open_image(volume_path)
    channels = input_channels(volume_path, plan)
    gt = open_label(volume_path)
    if tuple(gt.shape) != tuple(image.shape):
        raise ValueError(f"{volume_path}: gt shape {gt.shape} != image shape {image.shape}; re-ingest the case")
    full = SlabReader(gt, full_bbox(_shape3(tuple(gt.shape))))
    unknown = [v for v in label_values(full) if v >= plan.num_classes] if max_label(full) >= plan.num_classes else []
    if unknown:
        raise ValueError(
            f"{volume_path}: label values {unknown} are outside the plan's {plan.num_classes} classes;"
            " re-plan (run `medseg preprocess`) after fixing the labels"
        )
    geometry = Geometry.from_dict(meta["geometry"])
    layout = case_layout(image, geometry, plan)
    shape = layout.new_shape
    classes = list(range(1, plan.num_classes))
    source = {
        "source_hash": src_hash or source_hash(volume_path),
        "plan_hash": plan.plan_hash(),
        "crop_bbox": [list(b) for b in layout.crop_bbox],
        "native_shape": list(layout.native_shape),
        "native_geometry": geometry.to_dict(),
        "anisotropic_axis": layout.anisotropic_axis,
        "fg_classes": classes,
        "source_case": dict(meta.get("source", {})),
    }
    with case_writer(
        out_path,
        case_id,
        shape,
        np.float32,
        layout.geometry,
        labels=[GT_LABEL],
        label_names=dict(plan.label_names),
        source=source,
        kind="preprocessed",
        chunks=_chunks(plan.patch_size, shape),
        channel_names=plan.channel_names,
    ) as writer:
        for k, (channel, sink) in enumerate(zip(channels, writer.channel_arrays, strict=True)):
            preprocess_image_into(channel, layout, plan.for_channel(k), sink)  # per-channel normalisation
        lab = _labels_on_grid(gt, layout.crop_bbox, shape, layout.anisotropic_axis, list(range(1, plan.num_classes)))
        writer.labels[GT_LABEL][...] = lab
        fg = sample_foreground_locations(lab, classes, MAX_PER_CLASS, case_seed(case_id, "fg"))
        write_foreground_locations(writer, fg)
    return CaseResult(
        case_id=case_id,
        out_path=str(out_path),
        shape=shape,
        native_shape=layout.native_shape,
        fg_counts={c: int(len(fg[c])) for c in classes},
        seconds=time.perf_counter() - start,
    )
