"""Build one case: decode an image stack, rasterise its label sources, write the volume store.

:func:`build_case` is a pure function of a picklable :class:`CaseJob` and returns a small dict, so
it runs unchanged in-process or on a Dask worker (the orchestrator alone writes the catalog).
"""

from __future__ import annotations

import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from medseg.geometry import Geometry
from medseg.ingest.masks import mask_to_label
from medseg.ingest.pixels import read_stack
from medseg.ingest.reasons import IngestError, Reason
from medseg.ingest.seg import seg_to_label
from medseg.ingest.stacks import Frame
from medseg.io.volume_store import CaseVolume, write_case

LABEL_NAME = "gt"


@dataclass(frozen=True)
class LabelSource:
    """A DICOM SEG file (``kind="seg"``) or a mask image stack (``kind="mask"``) for one case."""

    kind: str
    series_uid: str
    path: str = ""  # SEG file
    frames: tuple[Frame, ...] = ()  # mask stack, sorted like the image
    description: str = ""


@dataclass
class CaseJob:
    case_id: str
    volume_path: str
    frames: list[Frame]
    geometry: Geometry
    source: dict[str, Any]
    labels: list[LabelSource] = field(default_factory=list)


def _merge(
    names: dict[str, int], label: NDArray[np.uint8], part: NDArray[np.uint8], part_names: dict[int, str]
) -> None:
    """Paint ``part`` into ``label``, mapping its values to global values by segment name."""
    for value, name in sorted(part_names.items()):
        if name not in names:
            names[name] = len(names) + 1
        label[part == value] = names[name]


def build_case(job: CaseJob) -> dict[str, Any]:
    """Decode, label and write one case. Never raises: failures come back as ``ok: False``.

    Returns:
        ``{"case_id", "ok", "reason", "message", "shape", "dtype", "label_names", "label_source",
        "label_series_uids", "label_errors": [{"path", "series_uid", "reason", "message"}]}``.
    """
    result: dict[str, Any] = {
        "case_id": job.case_id,
        "ok": False,
        "label_errors": [],
        "label_names": {},
        "label_source": "none",
    }
    try:
        image = read_stack(job.frames)
        if len(job.labels) > 255:
            raise IngestError(Reason.SEG_MISMATCH, f"case {job.case_id}: too many label sources")
        label = np.zeros(image.shape, dtype=np.uint8)
        names: dict[str, int] = {}
        used: list[LabelSource] = []
        for src in job.labels:
            try:
                if src.kind == "seg":
                    part, part_names = seg_to_label(src.path, job.geometry, job.frames)
                else:
                    vol = read_stack(list(src.frames))
                    part, part_names = mask_to_label(vol, src.description, src.frames[0].path)
                if len(names) + len(part_names) > 255:
                    raise IngestError(Reason.SEG_MISMATCH, f"{src.path or src.series_uid}: more than 255 labels")
                _merge(names, label, part, part_names)
                used.append(src)
            except IngestError as exc:
                where = src.path or (src.frames[0].path if src.frames else "")
                result["label_errors"].append(
                    {
                        "path": where,
                        "series_uid": src.series_uid,
                        "reason": exc.reason.value,
                        "message": exc.message,
                    }
                )
        label_names = {v: n for n, v in names.items()}
        kinds = sorted({"dicom_seg" if s.kind == "seg" else "mask_series" for s in used})
        label_source = "+".join(kinds) if kinds else "none"
        source = {
            **job.source,
            "label_source": label_source,
            "label_series_uids": sorted({s.series_uid for s in used}),
        }
        case = CaseVolume(
            case_id=job.case_id,
            image=image,
            geometry=job.geometry,
            labels={LABEL_NAME: label} if used else {},
            label_names=label_names,
            source=source,
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
            label_series_uids=source["label_series_uids"],
        )
    except IngestError as exc:
        result.update(reason=exc.reason.value, message=exc.message)
    except Exception as exc:  # noqa: BLE001 - one bad case never stops the run
        tail = "".join(traceback.format_exception(exc)[-3:])
        result.update(
            reason=Reason.INTERNAL_ERROR.value,
            message=f"{job.frames[0].path}: unexpected {type(exc).__name__}: {exc} | {tail}",
        )
    return result
