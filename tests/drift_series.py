"""CT series the demo generator would never make (another intensity scale, another grid), written with the
demo's own phantom and DICOM writer: out-of-distribution cases for the drift tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydicom.uid import generate_uid

from medseg.demo.dicom_series import ENCODINGS, UID_PREFIX, SeriesIdentity, build_ct_slices, write_ct_series
from medseg.demo.phantom import make_phantom
from medseg.geometry import AXIAL_DIRECTION, Geometry


def ood_series(out: Path, name: str, shape: tuple[int, int, int], spacing: tuple[float, float, float],
               scale: float = 1.0, offset: float = 0.0, seed: int = 0) -> str:
    """Write one CT series of a phantom stored as ``hu * scale + offset`` (another intensity scale when
    not 1/0); returns its SeriesInstanceUID."""
    hu, _ = make_phantom(shape, spacing, np.random.default_rng(seed))
    values = np.round(hu.astype(np.float64) * scale + offset).astype(np.int16)
    geometry = Geometry.create(spacing=np.asarray(spacing), origin=np.zeros(3),
                               direction=np.asarray(AXIAL_DIRECTION, dtype=np.float64))
    def uid_of(part: str) -> str:
        return str(generate_uid(prefix=UID_PREFIX, entropy_srcs=["drift-test", name, part]))

    uid = uid_of("series")
    identity = SeriesIdentity(
        patient_id=f"P-{name}", patient_name=f"DRIFT^{name.upper()}", patient_birth_date="19700101",
        patient_sex="O", accession_number=f"A-{name}", study_instance_uid=uid_of("study"), study_id="1",
        study_date="20240101", study_time="120000", study_description="drift test", series_instance_uid=uid,
        series_number=1, series_description=f"drift {name}", frame_of_reference_uid=uid_of("frame-of-reference"),
    )
    encoding = ENCODINGS[2]  # int16, intercept 0: stored = the values above
    write_ct_series(build_ct_slices(values, geometry, identity, encoding, ["drift-test", name]), out / name)
    return uid
