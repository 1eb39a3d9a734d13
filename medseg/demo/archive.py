"""Generate a small, deterministic synthetic DICOM archive (CT series + DICOM SEG ground truth).

Layout (names are hashes, so file order says nothing about slice order)::

    OUT/manifest.json
    OUT/<PatientID>/<study hash>/<series hash>/<sha1(SOPInstanceUID)>.dcm   # CT slices
    OUT/<PatientID>/<study hash>/<seg series hash>/<sha1(SOPInstanceUID)>.dcm  # DICOM SEG

Every value (UIDs, dates, pixel data, file names) derives from ``seed``: the same seed gives the
same bytes.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray
from pydantic import ValidationError
from pydicom.uid import generate_uid
from scipy import ndimage

from medseg.demo.dicom_series import ENCODINGS, UID_PREFIX, SeriesIdentity, build_ct_slices, write_ct_series
from medseg.demo.manifest import GENERATOR, MANIFEST_NAME, DemoCase, DemoManifest, load_manifest
from medseg.demo.phantom import LABEL_NAMES, make_phantom
from medseg.demo.seg_writer import build_seg, write_seg
from medseg.geometry import AXIAL_DIRECTION, Geometry

_FIRST_NAMES = ("JANE", "JOHN", "MARIA", "AHMED", "LI", "OLGA", "PEDRO", "AIKO", "SAM", "NORA", "IVAN", "ZOE")
_LAST_NAMES = ("DOE", "ROE", "MILLER", "NGUYEN", "SCHMIDT", "ROSSI", "TANAKA", "SILVA", "KOWALSKI", "BERG")
_SLICE_STEPS_MM = (2.5, 3.0, 3.75, 4.0, 5.0)


class DemoArchiveError(RuntimeError):
    """The output folder cannot receive a demo archive."""


@dataclass(frozen=True)
class _CasePlan:
    """Everything random about one case, drawn before any pixel is made."""

    case_index: int
    patient_index: int
    study_index: int
    shape: tuple[int, int, int]
    geometry: Geometry
    oblique_angle_deg: float
    encoding_index: int

    @property
    def oblique(self) -> bool:
        return self.oblique_angle_deg > 0


def _rotation(axis: NDArray[np.float64], angle_rad: float) -> NDArray[np.float64]:
    """3x3 rotation matrix about unit ``axis`` by ``angle_rad`` (Rodrigues)."""
    a = axis / np.linalg.norm(axis)
    k = np.array([[0.0, -a[2], a[1]], [a[2], 0.0, -a[0]], [-a[1], a[0], 0.0]])
    return np.eye(3) + np.sin(angle_rad) * k + (1.0 - np.cos(angle_rad)) * (k @ k)


def _case_rng(seed: int, *keys: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, *keys]))


def _plan_case(seed: int, case_index: int, patient_index: int, study_index: int) -> _CasePlan:
    rng = _case_rng(seed, 1, case_index)
    pixel = round(float(rng.uniform(1.15, 1.6)), 3)
    matrix = int(np.clip(np.ceil(rng.uniform(155.0, 185.0) / pixel), 96, 128))
    step = float(_SLICE_STEPS_MM[int(rng.integers(len(_SLICE_STEPS_MM)))])
    slices = int(np.clip(round(rng.uniform(115.0, 140.0) / step), 24, 48))
    shape = (slices, matrix, matrix)
    spacing = np.array([step, pixel, pixel])
    direction = np.asarray(AXIAL_DIRECTION, dtype=np.float64)
    angle_deg = 0.0
    if case_index % 3 == 2:
        angle_deg = round(float(rng.uniform(10.0, 25.0)), 2)
        axis = rng.normal(size=3)
        direction = _rotation(axis, np.deg2rad(angle_deg)) @ direction
    centre = np.array([rng.uniform(-15, 15), rng.uniform(-25, 5), rng.uniform(-450, -150)])
    origin = centre - direction @ (spacing * (np.asarray(shape) - 1) / 2.0)
    origin = np.round(origin, 3)
    geometry = Geometry.create(spacing=spacing, origin=origin, direction=direction)
    return _CasePlan(
        case_index, patient_index, study_index, shape, geometry, angle_deg, case_index % len(ENCODINGS)
    )


def _phantom(seed: int, plan: _CasePlan) -> tuple[NDArray[np.int16], NDArray[np.uint8]]:
    return make_phantom(plan.shape, plan.geometry.spacing, _case_rng(seed, 3, plan.case_index))


def phantom_for_case(seed: int, case_index: int) -> tuple[NDArray[np.int16], NDArray[np.uint8], Geometry]:
    """Recompute, without writing anything, what case ``case_index`` of archive ``seed`` contains.

    Returns:
        ``(hu, label, geometry)``: ``(Z, Y, X)`` int16 HU and uint8 labels exactly as stored in the
        archive's CT series and SEG, and their geometry.
    """
    if case_index < 0:
        raise ValueError(f"phantom_for_case: case_index must be >= 0, got {case_index}")
    patient_index, study_index = _study_layout(case_index + 1)[case_index]
    plan = _plan_case(seed, case_index, patient_index, study_index)
    hu, label = _phantom(seed, plan)
    return hu, label, plan.geometry


def _study_layout(cases: int) -> list[tuple[int, int]]:
    """``(patient_index, study_index)`` per case: every third case is a patient's second study."""
    layout: list[tuple[int, int]] = []
    patient = -1
    for case in range(cases):
        if case % 3 == 1:
            layout.append((patient, 1))
        else:
            patient += 1
            layout.append((patient, 0))
    return layout


def _uid(seed: int, *parts: object) -> str:
    return str(generate_uid(prefix=UID_PREFIX, entropy_srcs=[GENERATOR, str(seed), *(str(p) for p in parts)]))


def _short_hash(text: str) -> str:
    return hashlib.sha1(text.encode("ascii")).hexdigest()[:12]


@dataclass(frozen=True)
class _Patient:
    patient_id: str
    patient_name: str
    birth_date: str
    sex: str
    first_study: dt.date


def _patient(seed: int, patient_index: int) -> _Patient:
    rng = _case_rng(seed, 2, patient_index)
    sex = "F" if rng.random() < 0.5 else "M"
    last = _LAST_NAMES[int(rng.integers(len(_LAST_NAMES)))]
    name = f"{last}^{_FIRST_NAMES[int(rng.integers(len(_FIRST_NAMES)))]}"
    birth = dt.date(1940, 1, 1) + dt.timedelta(days=int(rng.integers(0, 50 * 365)))
    first = dt.date(2014, 1, 1) + dt.timedelta(days=int(rng.integers(0, 8 * 365)))
    return _Patient(f"{int(rng.integers(10**7, 10**8))}", name, birth.strftime("%Y%m%d"), sex, first)


def _check_out(out: Path) -> None:
    """Check that ``out`` is absent, empty, or a previous demo archive (which may then be replaced).

    Raises:
        DemoArchiveError: if ``out`` is a file, or holds anything that is not a previous demo archive.
    """
    if not out.exists():
        return
    if not out.is_dir():
        raise DemoArchiveError(f"demo-data: {out} exists and is not a folder; choose a new or empty folder")
    entries = sorted(p.name for p in out.iterdir())
    if not entries:
        return
    try:
        manifest = load_manifest(out)
    except (FileNotFoundError, ValidationError, ValueError) as exc:
        raise DemoArchiveError(
            f"demo-data: {out} is not empty ({len(entries)} entries, e.g. {entries[:3]}) and is not a "
            f"previous medseg demo archive ({type(exc).__name__}); choose a new or empty folder"
        ) from exc
    ours = {MANIFEST_NAME} | {Path(c.image_folder).parts[0] for c in manifest.cases}
    foreign = [e for e in entries if e not in ours]
    if foreign:
        raise DemoArchiveError(
            f"demo-data: {out} holds a previous demo archive plus foreign entries {foreign[:5]}; refusing to "
            "overwrite it. Move those entries away or choose another folder"
        )


def generate_demo_archive(
    out: Path,
    cases: int = 12,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> DemoManifest:
    """Write a synthetic DICOM archive of ``cases`` CT series with DICOM SEG ground truth.

    Every third case is a second study of the previous patient; every third case (index 2, 5, ...)
    is oblique (10-25 degrees). Spacing varies per case: pixel 1.15-1.6 mm, slice step 2.5-5 mm,
    96-128 rows/columns, 24-48 slices. Labels: ``{1: "organ", 2: "lesion"}``.

    Args:
        out: Target folder; must be absent, empty, or a previous demo archive (replaced).
        cases: Number of image series (>= 1).
        seed: Seed of everything; same seed -> byte-identical archive.
        progress: Called as ``progress(done, total)`` after each case.

    Returns:
        The manifest, also written to ``out/manifest.json``.

    Raises:
        DemoArchiveError: if ``out`` cannot be used.
        ValueError: if ``cases < 1`` or ``seed < 0``.
    """
    if cases < 1:
        raise ValueError(f"generate_demo_archive: cases must be >= 1, got {cases}")
    if seed < 0:
        raise ValueError(f"generate_demo_archive: seed must be >= 0, got {seed}")
    out = Path(out)
    _check_out(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        manifest = _generate_into(tmp, cases, seed, progress)
        if out.exists():
            shutil.rmtree(out)  # empty or a previous demo archive (checked above); replaced only on success
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return manifest


def _generate_into(
    root: Path, cases: int, seed: int, progress: Callable[[int, int], None] | None
) -> DemoManifest:
    layout = _study_layout(cases)
    records: list[DemoCase] = []
    total_bytes = 0
    for case_index, (patient_index, study_index) in enumerate(layout):
        plan = _plan_case(seed, case_index, patient_index, study_index)
        patient = _patient(seed, patient_index)
        hu, label = _phantom(seed, plan)

        study_uid = _uid(seed, "study", patient_index, study_index)
        series_uid = _uid(seed, "series", patient_index, study_index)
        for_uid = _uid(seed, "frame-of-reference", patient_index, study_index)
        seg_series_uid = _uid(seed, "seg-series", patient_index, study_index)
        seg_sop_uid = _uid(seed, "seg-instance", patient_index, study_index)
        study_date = patient.first_study + dt.timedelta(days=study_index * (90 + 37 * patient_index % 200))
        date_str = study_date.strftime("%Y%m%d")
        time_str = f"{8 + (case_index * 7) % 10:02d}{(case_index * 13) % 60:02d}00"
        identity = SeriesIdentity(
            patient_id=patient.patient_id,
            patient_name=patient.patient_name,
            patient_birth_date=patient.birth_date,
            patient_sex=patient.sex,
            accession_number=f"A{_short_hash(study_uid)[:9].upper()}",
            study_instance_uid=study_uid,
            study_id=str(1 + study_index),
            study_date=date_str,
            study_time=time_str,
            study_description="CT ABDOMEN WITH CONTRAST",
            series_instance_uid=series_uid,
            series_number=2,
            series_description=f"Abdomen {plan.geometry.spacing[0]:g}mm" + (" oblique" * plan.oblique),
            frame_of_reference_uid=for_uid,
        )
        encoding = ENCODINGS[plan.encoding_index]
        datasets = build_ct_slices(hu, plan.geometry, identity, encoding, [GENERATOR, str(seed), series_uid])
        study_dir = root / patient.patient_id / _short_hash(study_uid)
        image_dir = study_dir / _short_hash(series_uid)
        paths = write_ct_series(datasets, image_dir)
        seg = build_seg(datasets, label, LABEL_NAMES, seg_series_uid, seg_sop_uid, date_str, time_str)
        seg_path = write_seg(seg, study_dir / _short_hash(seg_series_uid))
        total_bytes += sum(p.stat().st_size for p in paths) + seg_path.stat().st_size

        counts = np.bincount(label.ravel(), minlength=len(LABEL_NAMES) + 1)
        records.append(
            DemoCase(
                case_id=f"demo{seed:03d}-{case_index:03d}",
                case_index=case_index,
                patient_id=patient.patient_id,
                patient_name=patient.patient_name,
                study_index=study_index,
                study_date=date_str,
                study_instance_uid=study_uid,
                series_instance_uid=series_uid,
                frame_of_reference_uid=for_uid,
                seg_series_instance_uid=seg_series_uid,
                seg_sop_instance_uid=seg_sop_uid,
                image_folder=image_dir.relative_to(root).as_posix(),
                seg_file=seg_path.relative_to(root).as_posix(),
                n_image_files=len(paths),
                shape=plan.shape,
                spacing=plan.geometry.spacing,
                origin=plan.geometry.origin,
                direction=plan.geometry.direction,
                oblique=plan.oblique,
                oblique_angle_deg=plan.oblique_angle_deg,
                pixel_encoding=encoding.name,
                lesion_count=int(ndimage.label(label == 2)[1]),
                label_voxels={v: int(counts[v]) for v in sorted(LABEL_NAMES)},
            )
        )
        if progress is not None:
            progress(case_index + 1, cases)
    manifest = DemoManifest(
        seed=seed,
        n_cases=cases,
        n_patients=layout[-1][0] + 1,
        label_names=dict(LABEL_NAMES),
        total_bytes=total_bytes,
        cases=records,
    )
    manifest.save(root)
    return manifest
