"""Drift test data: a demo workspace with a plan, then new demo cases and out-of-distribution series
(:mod:`drift_series`) ingested in one run."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from drift_series import ood_series

from medseg.config import MedsegConfig
from medseg.demo.archive import generate_demo_archive
from medseg.ingest.run import IngestSummary, ingest
from medseg.io.catalog import Catalog
from medseg.preprocess.fingerprint import compute_fingerprint
from medseg.preprocess.planner import make_plan
from medseg.workspace import Workspace

SECRET = "drift-test-secret"


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
