"""Series assembly: group image frames into geometrically valid stacks and build their Geometry.

A *stack* is a set of 2D frames (single-frame instances or frames of enhanced multi-frame files)
of one SeriesInstanceUID sharing orientation, matrix size and pixel spacing. Steps:

1. de-duplicate files by SOPInstanceUID (the same instance exported twice, e.g. in another
   transfer syntax in another folder): the first path in sort order is kept;
2. split the series by acquisition (FrameOfReferenceUID, SeriesNumber, ImageType[:2]: different
   series an anonymiser gave one UID), then by (orientation, rows, columns, pixel spacing);
3. if a stack has several frames at one position and spans several folders, split it by folder
   (one archive holding several copies of a series); identical copies become ``duplicate_series``;
4. sort the frames by ImagePositionPatient projected on the slice normal (row x column cosine) and
   validate on *all* slices: count, orientation, duplicate positions, constant increment,
   collinearity and gantry tilt;
5. build :class:`~medseg.geometry.Geometry` (see that module for the exact convention).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from medseg.geometry import Geometry
from medseg.io.dicom.frame import Frame
from medseg.io.reasons import IngestError, Reason

MIN_SLICES = 3
ORIENTATION_GROUP_TOL = 0.05  # cosines further apart than this are different stacks
ORIENTATION_TOL = 1e-3  # cosines within a stack must agree this well
STEP_RTOL = 0.02  # slice increments may vary by 2 % of the median increment ...
STEP_ATOL = 0.02  # ... or 0.02 mm, whichever is larger (IPP is often rounded)
DUPLICATE_TOL = 0.01  # mm along the normal: closer slices are "at the same position"
TILT_TOL = 1e-3  # 1 - cos(angle between stack direction and normal); ~2.6 degrees (highdicom default)
LINE_TOL = 0.1  # fraction of the in-plane pixel size a slice may deviate from the stacking line


@dataclass
class Stack:
    """A candidate volume: frames sorted along the normal, and either a geometry or a failure."""

    series_uid: str
    stack_key: str  # "" when the series is a single stack; else what distinguishes this stack
    frames: list[Frame]
    info: dict[str, Any]  # series-level header fields (modality, description, study_key ...)
    geometry: Geometry | None = None
    reason: Reason | None = None
    message: str = ""
    paths: list[str] = field(default_factory=list)
    file_shape: tuple[int, int, int] | None = None  # (z, y, x) of a NIfTI/NRRD image (no frames)

    @property
    def ok(self) -> bool:
        return self.geometry is not None and self.reason is None

    @property
    def shape(self) -> tuple[int, int, int]:
        if self.file_shape is not None:
            return self.file_shape
        f = self.frames[0]
        return (len(self.frames), f.rows, f.cols)

    @property
    def sop_uids(self) -> list[str]:
        return sorted({f.sop_uid for f in self.frames})


@dataclass
class SeriesAssembly:
    stacks: list[Stack]
    duplicate_files: list[tuple[str, str]]  # (duplicate path, kept path)


def frames_of(header: dict[str, Any]) -> list[Frame]:
    """Expand an image header dict (see :mod:`medseg.ingest.headers`) into frames."""
    out = []
    px = header.get("pixel")
    layout = (
        (
            int(px["offset"]),
            int(px["bits"]),
            int(px["stored"]),
            bool(px["signed"]),
            float(px["slope"]),
            float(px["intercept"]),
            int(header.get("size", -1)),
        )
        if px and len(header["frames"]) == 1
        else None
    )
    for i, fr in enumerate(header["frames"]):
        out.append(
            Frame(
                path=header["path"],
                frame=i,
                sop_uid=header["sop_uid"],
                ipp=tuple(float(v) for v in fr["ipp"]),  # type: ignore[arg-type]
                iop=tuple(float(v) for v in fr["iop"]),
                spacing=(float(fr["spacing"][0]), float(fr["spacing"][1])),
                rows=int(header["rows"]),
                cols=int(header["cols"]),
                pixel=layout,
            )
        )
    return out


def _series_info(header: dict[str, Any]) -> dict[str, Any]:
    keys = (
        "modality",
        "description",
        "manufacturer",
        "model_name",
        "protocol",
        "series_number",
        "study_key",
        "patient_key",
        "for_uid",
        "image_type",
        "sop_class",
        "sop_name",
        "uid_fallback",
    )
    return {k: header.get(k) for k in keys}


def assemble_series(headers: list[dict[str, Any]]) -> SeriesAssembly:
    """Split the image headers of ONE SeriesInstanceUID into validated stacks."""
    if not headers:
        return SeriesAssembly([], [])
    # keep the copy in the folder holding most of the series (a fragment copied elsewhere is the duplicate)
    per_folder: dict[str, int] = defaultdict(int)
    for h in headers:
        per_folder[os.path.dirname(h["path"])] += 1
    headers = sorted(headers, key=lambda h: (-per_folder[os.path.dirname(h["path"])], h["path"]))
    series_uid = headers[0]["series_uid"]
    kept: dict[str, dict[str, Any]] = {}
    duplicates: list[tuple[str, str]] = []
    for h in headers:
        if h["sop_uid"] in kept:
            duplicates.append((h["path"], kept[h["sop_uid"]]["path"]))
        else:
            kept[h["sop_uid"]] = h
    stacks: list[Stack] = []
    acquisitions = _split_by_acquisition(list(kept.values()))
    n = 0  # orientations in the series (all acquisitions)
    for acq_key, members in acquisitions:
        acq_stacks, n = _orientation_stacks(series_uid, acq_key, members)
        stacks.extend(acq_stacks)
    if len(acquisitions) > 1:
        n = len({g[0] for g in _group_by_orientation([f for h in kept.values() for f in frames_of(h)])})
    _mark_duplicate_stacks(stacks)
    for st in stacks:
        st.paths = sorted({f.path for f in st.frames})
        if st.reason is not None:
            continue
        try:
            st.frames, st.geometry = validate_stack(st.frames)
        except IngestError as exc:
            st.reason, st.message = exc.reason, exc.message
            if exc.reason == Reason.TOO_FEW_SLICES and n > 1:
                st.reason = Reason.INCONSISTENT_ORIENTATION
                st.message = (
                    f"series {series_uid} mixes {n} orientations; this one "
                    f"has only {len(st.frames)} slice(s) ({st.paths[0]} ...); not a volume"
                )
    return SeriesAssembly(stacks, duplicates)


def _acquisition_key(header: dict[str, Any]) -> tuple[str, str, tuple[str, ...]]:
    image_type = tuple(str(v).upper() for v in (header.get("image_type") or [])[:2])
    return (str(header.get("for_uid") or ""), str(header.get("series_number") or ""), image_type)


def _split_by_acquisition(headers: list[dict[str, Any]]) -> list[tuple[str, list[dict[str, Any]]]]:
    """Headers of one SeriesInstanceUID split by (FrameOfReferenceUID, SeriesNumber, ImageType[:2]).

    Different acquisitions an anonymiser gave one UID differ in these; the slices of one real
    series do not. ``[("", headers)]`` when they all agree, else ``("acq=<hash of the key>", part)``
    per acquisition (stable whatever else arrives).
    """
    parts: dict[tuple[str, str, tuple[str, ...]], list[dict[str, Any]]] = defaultdict(list)
    for h in headers:
        parts[_acquisition_key(h)].append(h)
    if len(parts) < 2:
        return [("", headers)]
    return [
        ("acq=" + hashlib.sha256(json.dumps(key).encode()).hexdigest()[:8], members)
        for key, members in sorted(parts.items())
    ]


def _orientation_stacks(series_uid: str, acq_key: str, headers: list[dict[str, Any]]) -> tuple[list[Stack], int]:
    """The candidate stacks of one acquisition (split by orientation/matrix/spacing, then by folder)
    and its number of orientations."""
    info = _series_info(headers[0])
    frames = [f for h in headers for f in frames_of(h)]
    groups = _group_by_orientation(frames)
    stacks: list[Stack] = []
    for (_, key), members in groups:
        for sub_key, sub in _split_by_folder(members):
            full_key = "|".join(k for k in (acq_key, key if len(groups) > 1 else "", sub_key) if k)
            stacks.append(Stack(series_uid, full_key, sub, info))
    return stacks, len({g[0] for g in groups})


def _group_by_orientation(frames: list[Frame]) -> list[tuple[tuple[int, str], list[Frame]]]:
    reps: list[NDArray[np.float64]] = []
    groups: dict[tuple[int, str], list[Frame]] = defaultdict(list)
    keys: dict[tuple[Any, ...], tuple[int, str]] = {}  # (iop, rows, cols, spacing) -> group key (computed once)
    for f in frames:
        exact = (f.iop, f.rows, f.cols, f.spacing)
        group = keys.get(exact)
        if group is None:
            iop = np.asarray(f.iop)
            idx = next(
                (k for k, rep in enumerate(reps) if float(np.max(np.abs(rep - iop))) < ORIENTATION_GROUP_TOL), -1
            )
            if idx < 0:
                reps.append(iop)
                idx = len(reps) - 1
            iop_txt = ",".join(f"{v:.2f}" for v in reps[idx])
            group = keys[exact] = (idx, f"iop={iop_txt}|{f.rows}x{f.cols}|ps={f.spacing[0]:.4g},{f.spacing[1]:.4g}")
        groups[group].append(f)
    return sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1]))


def _has_duplicate_positions(frames: list[Frame]) -> bool:
    if len(frames) < 2:
        return False
    d = np.sort(np.array([np.dot(frames[0].normal(), f.ipp) for f in frames]))
    return bool(np.any(np.diff(d) < DUPLICATE_TOL))


def _split_by_folder(frames: list[Frame]) -> list[tuple[str, list[Frame]]]:
    folders: dict[str, list[Frame]] = defaultdict(list)
    for f in frames:
        folders[f.folder].append(f)
    if len(folders) < 2 or not _has_duplicate_positions(frames):
        return [("", frames)]
    return [(f"dir={folder}", members) for folder, members in sorted(folders.items())]


def _mark_duplicate_stacks(stacks: list[Stack]) -> None:
    """Folder-split stacks with identical positions are copies: keep the first, flag the others."""
    seen: dict[tuple[Any, ...], Stack] = {}
    for st in stacks:
        n = st.frames[0].normal()
        sig = (
            st.frames[0].rows,
            st.frames[0].cols,
            tuple(sorted(round(float(np.dot(n, f.ipp)), 2) for f in st.frames)),
        )
        if sig in seen:
            first = seen[sig]
            st.reason = Reason.DUPLICATE_SERIES
            st.message = (
                f"{Path(st.frames[0].path).parent}: another copy of series {st.series_uid} "
                f"(same slice positions as {Path(first.frames[0].path).parent}, which was kept)"
            )
        else:
            seen[sig] = st


def validate_stack(frames: list[Frame]) -> tuple[list[Frame], Geometry]:
    """Sort frames along the slice normal, validate all of them and build the geometry.

    Returns:
        The sorted frames and the Geometry of the ``(z, y, x)`` volume they form.

    Raises:
        IngestError: ``too_few_slices``, ``inconsistent_orientation``, ``duplicate_positions``,
            ``slice_gap``, ``irregular_positions`` or ``gantry_tilt``.
    """
    first = frames[0]
    where = f"{first.path}{' ...' if len(frames) > 1 else ''}"
    if len(frames) < MIN_SLICES:
        raise IngestError(
            Reason.TOO_FEW_SLICES,
            f"{where}: stack has {len(frames)} slice(s), at least {MIN_SLICES} are needed for a volume",
        )
    iops = np.array([f.iop for f in frames])
    dev = float(np.max(np.abs(iops - iops[0])))
    if dev > ORIENTATION_TOL:
        raise IngestError(
            Reason.INCONSISTENT_ORIENTATION,
            f"{where}: ImageOrientationPatient varies by {dev:.4f} between slices of one stack",
        )
    normal = first.normal()
    ipps = np.array([f.ipp for f in frames])
    proj = ipps @ normal
    order = np.argsort(proj, kind="stable")
    frames = [frames[i] for i in order]
    ipps, proj = ipps[order], proj[order]
    steps = np.diff(proj)
    if np.any(steps < DUPLICATE_TOL):
        k = int(np.argmax(steps < DUPLICATE_TOL))
        raise IngestError(
            Reason.DUPLICATE_POSITIONS,
            f"{frames[k].path} and {frames[k + 1].path} lie at the "
            f"same position ({proj[k]:.3f} mm along the normal): several "
            "volumes (echoes/time points) in one series; not a single "
            "3D volume",
        )
    median = float(np.median(steps))
    tol = max(STEP_RTOL * median, STEP_ATOL)
    bad = np.abs(steps - median) > tol
    if np.any(bad):
        k = int(np.argmax(bad))
        raise IngestError(
            Reason.SLICE_GAP,
            f"{where}: slice increment {steps[k]:.3f} mm between "
            f"{Path(frames[k].path).name} and {Path(frames[k + 1].path).name} "
            f"differs from the median {median:.3f} mm (missing or extra slice?)",
        )
    span = ipps[-1] - ipps[0]
    length = float(np.linalg.norm(span))
    u = span / length
    n = len(frames)
    expected = ipps[0] + np.outer(np.arange(n) / (n - 1), span)
    off = float(np.max(np.linalg.norm(ipps - expected, axis=1)))
    if off > LINE_TOL * min(first.spacing):
        raise IngestError(
            Reason.IRREGULAR_POSITIONS,
            f"{where}: slice positions deviate up to {off:.3f} mm from a straight line; not a regular volume",
        )
    cos = float(np.dot(u, normal))
    if cos < 1.0 - TILT_TOL:
        angle = float(np.degrees(np.arccos(np.clip(cos, -1.0, 1.0))))
        raise IngestError(
            Reason.GANTRY_TILT,
            f"{where}: slices are stacked {angle:.2f} degrees off the slice "
            "normal (gantry tilt); resample it to an orthogonal grid first",
        )
    row = np.asarray(first.iop[:3])
    col = np.asarray(first.iop[3:])
    direction = np.column_stack([u, col / np.linalg.norm(col), row / np.linalg.norm(row)])
    geometry = Geometry.create(
        spacing=(length / (n - 1), first.spacing[0], first.spacing[1]),
        origin=ipps[0],
        direction=direction,
    )
    return frames, geometry
