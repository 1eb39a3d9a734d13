"""Drift test data: a demo workspace with a plan, and CT series the demo generator would never make
(another intensity scale, another grid), written with the demo's own phantom and DICOM writer."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydicom.uid import generate_uid

from medseg.config import MedsegConfig
from medseg.demo.archive import generate_demo_archive
from medseg.demo.dicom_series import ENCODINGS, UID_PREFIX, SeriesIdentity, build_ct_slices, write_ct_series
from medseg.demo.phantom import make_phantom
from medseg.geometry import AXIAL_DIRECTION, Geometry
from medseg.ingest.run import IngestSummary, ingest
from medseg.io.catalog import Catalog
from medseg.preprocess.fingerprint import compute_fingerprint
from medseg.preprocess.planner import make_plan
from medseg.workspace import Workspace

SECRET = "drift-test-secret"


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


@dataclass
class DriftWorkspace:
    cfg: MedsegConfig
    ws: Workspace
    training: list[str]
    new_demo: list[str]
    ood: dict[str, str]  # "intensity" / "spacing" -> case id
    ingest: IngestSummary


def ingest_all(ws: Workspace, sources: list[Path]) -> IngestSummary:
    from medseg.config import IngestConfig

    return ingest(sources, ws, IngestConfig(deid_secret=SECRET, files_per_batch=256))


def plan_training(ws: Workspace, cfg: MedsegConfig) -> list[str]:
    """Fingerprint the labeled stores and make the plan (no case is preprocessed: drift needs only these)."""
    labeled = sorted(ws.volumes_dir.glob("*.zarr"))
    fp = compute_fingerprint(labeled, None)
    fp.save(ws.fingerprint_path)
    make_plan(fp, cfg.preprocess, cfg.train).save(ws.plan_path)
    return [c.case_id for c in fp.cases]


def drift_workspace(root: Path) -> DriftWorkspace:
    """8 demo cases (seed 3) trained on; then 3 more demo cases (seed 4) and two out-of-distribution series
    arrive in one ingest run: MR-like intensities (``(hu + 1024) * 1.5``) on a demo grid, and CT values
    on a 8 mm x 0.6 mm grid."""
    cfg = MedsegConfig(workspace=root / "ws")
    ws = Workspace.at(cfg.workspace).ensure()
    generate_demo_archive(root / "train", cases=8, seed=3)
    ingest_all(ws, [root / "train"])
    training = plan_training(ws, cfg)
    generate_demo_archive(root / "new", cases=3, seed=4)
    uids = {
        "intensity": ood_series(root / "ood", "intensity", (32, 112, 112), (3.0, 1.4, 1.4), scale=1.5, offset=1536),
        "spacing": ood_series(root / "ood", "spacing", (16, 256, 256), (8.0, 0.6, 0.6)),
    }
    summary = ingest_all(ws, [root / "train", root / "new", root / "ood"])
    catalog = Catalog(ws.catalog_path)
    ood = {k: catalog.case(uid).case_id for k, uid in uids.items()}
    new = [c for c in catalog.cases_written_by(summary.run_id) if c not in ood.values()]
    return DriftWorkspace(cfg, ws, training, new, ood, summary)
