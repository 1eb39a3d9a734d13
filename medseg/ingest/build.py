"""Build one case: decode an image stack (or read a NIfTI/NRRD image), rasterise its label sources,
write the volume store.

:func:`build_case` is a pure function of a picklable :class:`CaseJob` and returns a small dict, so
it runs unchanged in-process or on a Dask worker (the orchestrator alone writes the catalog).
"""

from __future__ import annotations

import traceback
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from medseg.deid import keyed_hash
from medseg.geometry import Geometry, resample_onto
from medseg.ingest.masks import mask_to_label, same_grid
from medseg.io.dicom.frame import Frame
from medseg.io.dicom.pixels import read_stack
from medseg.io.dicom.rtstruct import rtstruct_to_label
from medseg.io.dicom.seg import seg_to_label
from medseg.io.reasons import IngestError, Reason
from medseg.io.volume_files import image_values, label_values, read_volume
from medseg.io.volume_store import CaseVolume, write_case

LABEL_NAME = "gt"
SOURCE_NAMES = {"seg": "dicom_seg", "mask": "mask_series", "rtstruct": "rtstruct", "file": "label_file"}


@dataclass(frozen=True)
class LabelSource:
    """One label source of a case.

    ``kind``: ``"seg"`` (DICOM SEG file ``path``), ``"mask"`` (mask image stack ``frames``),
    ``"rtstruct"`` (RTSTRUCT file ``path``) or ``"file"`` (NIfTI/NRRD label map ``path`` whose
    values are named by ``names``, all of them when ``all_names`` (dataset labels), else only the
    values present; without names a binary map becomes ``{1: description}``).
    """

    kind: str
    series_uid: str
    path: str = ""  # SEG / RTSTRUCT / label file
    frames: tuple[Frame, ...] = ()  # mask stack, sorted like the image
    description: str = ""
    names: tuple[tuple[int, str], ...] = ()  # label file: value -> name
    all_names: bool = False  # label file: keep named values absent from this case (dataset-wide names)


@dataclass(frozen=True)
class ChannelSource:
    """A non-reference channel of a multi-sequence case: an image stack (``frames``) or channel ``channel`` of
    an image file (``image_file``: the case's own 4D file, MSD layout, or its own file, nnU-Net layout), read
    and put on the case's grid."""

    name: str
    series_uid: str
    frames: tuple[Frame, ...]
    geometry: Geometry
    image_file: str = ""
    channel: int = 0
    file_shape: tuple[int, int, int] | None = None  # (z, y, x) of ``image_file`` from its header (size check)


@dataclass
class CaseJob:
    """Everything needed to build one case: a DICOM stack (``frames``) or an image file (``image_file``)."""

    case_id: str
    volume_path: str
    frames: list[Frame]
    geometry: Geometry
    source: dict[str, Any]
    labels: list[LabelSource] = field(default_factory=list)
    image_file: str = ""  # NIfTI/NRRD image (then ``frames`` is empty)
    channel: int = 0  # channel of ``image_file`` to read
    file_shape: tuple[int, int, int] | None = None  # (z, y, x) of ``image_file`` from its header
    channel_names: tuple[str, ...] = ()  # multi-sequence case (ingest.channels): every channel, reference first
    extra_channels: list[ChannelSource] = field(default_factory=list)  # channels after the reference

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(z, y, x)`` of the image as its headers declare it (nothing is read)."""
        if self.file_shape is not None or not self.frames:
            return self.file_shape or (0, 0, 0)
        return (len(self.frames), self.frames[0].rows, self.frames[0].cols)

    @property
    def where(self) -> str:
        return self.image_file or (self.frames[0].path if self.frames else self.case_id)


def _merge(
    names: dict[str, int],
    label: NDArray[np.uint8] | None,
    part: NDArray[np.uint8],
    part_names: dict[int, str],
    shape: tuple[int, ...],
    where: str,
) -> NDArray[np.uint8]:
    """Paint ``part`` into ``label`` (None: nothing painted yet), mapping its values to global values by name."""
    if part.shape != shape:
        raise IngestError(Reason.LABEL_MISMATCH, f"{where}: label of shape {part.shape} on an image of shape {shape}")
    mapping = {}
    for value, name in sorted(part_names.items()):
        if name not in names:
            names[name] = len(names) + 1
        mapping[value] = names[name]
    if label is None:
        if list(mapping.items()) == [(v, v) for v in range(1, len(mapping) + 1)] and int(part.max()) <= len(mapping):
            return part  # the first label source already holds the global values 1..n
        label = np.zeros(shape, dtype=np.uint8)
    for value, target in mapping.items():
        label[part == value] = target
    return label


def src_paths(src: LabelSource) -> list[str]:
    """Every file of a label source (a mask series has one per slice)."""
    return sorted({f.path for f in src.frames}) if src.frames else [src.path]


def check_size(job: CaseJob, max_voxels: int) -> None:
    """Refuse a volume (or one of its other channels) whose declared size exceeds ``max_voxels`` before any
    pixel is allocated.

    Raises:
        IngestError: ``pixel_error`` naming the declared shape and the setting to raise.
    """
    shapes = [(job.where, job.shape)] + [
        (c.frames[0].path, (len(c.frames), c.frames[0].rows, c.frames[0].cols)) for c in job.extra_channels if c.frames
    ] + [(c.image_file, c.file_shape) for c in job.extra_channels if c.image_file and c.file_shape]
    for where, (z, y, x) in shapes:
        if max_voxels and z * y * x > max_voxels:
            raise IngestError(
                Reason.PIXEL_ERROR,
                f"{where}: headers declare a {z}x{y}x{x} volume ({z * y * x:,} voxels), more than "
                f"ingest.max_volume_voxels={max_voxels:,}; a damaged or hostile header, or raise the setting",
            )


def label_refs(secret: str, series_uids: Iterable[str]) -> list[str]:
    """Keyed stand-ins of label series UIDs, as a volume store records them (sorted)."""
    return sorted({keyed_hash(secret, uid, prefix="uid_", length=32) for uid in series_uids})


def stored_source(source: dict[str, Any], secret: str) -> dict[str, Any]:
    """``source`` as a volume store keeps it: UIDs, stack keys (which may name a folder) and file paths
    replaced by keyed hashes; the catalog alone keeps them in clear."""
    out = dict(source)
    for key in ("series_uid", "stack_key", "file"):
        if out.get(key):
            out[key] = keyed_hash(secret, str(out[key]), prefix="uid_" if key == "series_uid" else "", length=32)
    return out


def read_channel(
    src: ChannelSource, geometry: Geometry, shape: tuple[int, ...], roots: Sequence[str] = ()
) -> NDArray[Any]:
    """Decode a channel; one on another grid is resampled (linear, physical space) onto ``geometry``."""
    if src.image_file:  # a channel of a 4D file, or a file of its own (resampled below if on another grid)
        volume: NDArray[Any] = image_values(read_volume(src.image_file, src.channel, roots)[0])
    else:
        volume = read_stack(list(src.frames))
    if same_grid(src.geometry, volume.shape, geometry, shape):
        return volume
    return resample_onto(volume, src.geometry, geometry, (int(shape[0]), int(shape[1]), int(shape[2])))


def build_case(job: CaseJob, secret: str, max_voxels: int = 0, roots: Sequence[str] = ()) -> dict[str, Any]:
    """Decode, label and write one case. Never raises: failures come back as ``ok: False``.

    ``max_voxels``: largest volume decoded (0: no limit), checked on the header sizes first.
    ``roots``: the ingest sources; NRRD data files must lie inside them.
    ``secret``: the de-identification key; the store records keyed stand-ins of UIDs and paths
    (:func:`stored_source`).

    Returns:
        ``{"case_id", "ok", "reason", "message", "shape", "dtype", "label_names", "label_source",
        "label_series_uids", "label_errors": [{"path", "paths", "series_uid", "reason", "message"}]}``.
    """
    result: dict[str, Any] = {
        "case_id": job.case_id,
        "ok": False,
        "label_errors": [],
        "label_names": {},
        "label_source": "none",
    }
    try:
        check_size(job, max_voxels)
        image = (image_values(read_volume(job.image_file, job.channel, roots)[0]) if job.image_file
                 else read_stack(job.frames))
        if len(job.labels) > 255:
            raise IngestError(Reason.SEG_MISMATCH, f"case {job.case_id}: too many label sources")
        label: NDArray[np.uint8] | None = None
        names: dict[str, int] = {}
        used: list[LabelSource] = []
        for src in job.labels:
            try:
                if src.kind == "seg":
                    part, part_names = seg_to_label(src.path, job.geometry, job.frames)
                elif src.kind == "rtstruct":
                    part, part_names = rtstruct_to_label(src.path, job.geometry, job.frames)
                elif src.kind == "file":
                    part, part_names = _file_label(src, image.shape, job.geometry, roots)
                else:
                    vol = read_stack(list(src.frames))
                    part, part_names = mask_to_label(vol, src.description, src.frames[0].path)
                if len(names) + len(part_names) > 255:
                    raise IngestError(Reason.SEG_MISMATCH, f"{src.path or src.series_uid}: more than 255 labels")
                label = _merge(names, label, part, part_names, image.shape, src.path or src.series_uid)
                used.append(src)
            except IngestError as exc:
                result["label_errors"].append(
                    {
                        "path": exc.path or src.path or (src.frames[0].path if src.frames else ""),
                        "paths": src_paths(src),
                        "series_uid": src.series_uid,
                        "reason": exc.reason.value,
                        "message": exc.message,
                    }
                )
        label_names = {v: n for n, v in names.items()}
        kinds = sorted({SOURCE_NAMES.get(s.kind, s.kind) for s in used})
        label_source = "+".join(kinds) if kinds else "none"
        used_uids = sorted({s.series_uid for s in used})
        source = {
            **stored_source(job.source, secret),
            "label_source": label_source,
            "label_refs": label_refs(secret, used_uids),
        }
        case = CaseVolume(
            case_id=job.case_id,
            image=image,
            geometry=job.geometry,
            labels={LABEL_NAME: label} if label is not None else {},
            label_names=label_names,
            source=source,
            channels=[read_channel(c, job.geometry, image.shape, roots) for c in job.extra_channels],
            channel_names=list(job.channel_names),
        )
        try:
            write_case(Path(job.volume_path), case)
        except Exception as exc:  # noqa: BLE001
            raise IngestError(
                Reason.WRITE_ERROR,
                f"{job.volume_path}: cannot write the volume store "
                f"({type(exc).__name__}: {exc}); check disk space/permissions",
            ) from exc
        result.update(
            ok=True,
            shape=list(image.shape),
            dtype=str(image.dtype),
            label_names=label_names,
            label_source=label_source,
            has_labels=bool(used),
            label_series_uids=used_uids,
        )
    except IngestError as exc:
        result.update(reason=exc.reason.value, message=exc.message, path=exc.path)
    except Exception as exc:  # noqa: BLE001 - one bad case never stops the run
        tail = "".join(traceback.format_exception(exc)[-3:])
        result.update(
            reason=Reason.INTERNAL_ERROR.value,
            message=f"{job.where}: unexpected {type(exc).__name__}: {exc} | {tail}",
        )
    return result


def _file_label(
    src: LabelSource, shape: tuple[int, ...], geometry: Geometry, roots: Sequence[str] = ()
) -> tuple[NDArray[np.uint8], dict[int, str]]:
    """Read a NIfTI/NRRD label map that must share the image grid exactly."""
    arr, label_geometry = read_volume(src.path, roots=roots)
    if tuple(arr.shape) != tuple(shape) or not same_grid(label_geometry, arr.shape, geometry, shape):
        raise IngestError(
            Reason.LABEL_MISMATCH,
            f"{src.path}: label grid (shape {tuple(arr.shape)}, spacing {label_geometry.spacing}, origin "
            f"{label_geometry.origin}) differs from its image (shape {tuple(shape)}, spacing {geometry.spacing}, "
            f"origin {geometry.origin}); resample the label onto the image grid",
        )
    if src.names:
        return label_values(arr, dict(src.names), src.path, keep_absent=src.all_names)
    part, names = mask_to_label(arr, src.description or "foreground", src.path)
    if len(names) == 1:
        names = {1: src.description or "foreground"}
    return part, names
