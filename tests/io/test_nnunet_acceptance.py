"""nnU-Net v2 itself accepts ``medseg export-dataset --format nnunet``: real MSD hippocampus cases, ingested
into a workspace and exported, pass ``nnUNetv2_plan_and_preprocess -c 3d_fullres --verify_dataset_integrity``.

nnunetv2 lives in the validators' venv (``.venv-validators``, ``deploy/install.sh --dev``; the environment
variable ``MEDSEG_VALIDATORS_PYTHON`` names another Python that has it).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
from msd_subset import msd_subset

from medseg.config import IngestConfig
from medseg.ingest.export import export_nnunet_dataset
from medseg.ingest.run import ingest
from medseg.io.catalog import Catalog
from medseg.workspace import Workspace

REPO = Path(__file__).resolve().parents[2]
VALIDATORS_PYTHON = Path(os.environ.get("MEDSEG_VALIDATORS_PYTHON") or REPO / ".venv-validators" / "bin" / "python")
CASES = ["hippocampus_003", "hippocampus_004", "hippocampus_006", "hippocampus_008"]
DATASET_ID = 987
PLAN_AND_PREPROCESS = ("import sys; from nnunetv2.experiment_planning.plan_and_preprocess_entrypoints import "
                       "plan_and_preprocess_entry as main; sys.argv[0] = 'nnUNetv2_plan_and_preprocess'; main()")


@pytest.mark.slow
def test_nnunet_plans_and_preprocesses_the_exported_dataset(real_data: Path, tmp_path: Path) -> None:
    if not VALIDATORS_PYTHON.is_file():
        pytest.fail(f"{VALIDATORS_PYTHON} is missing: run `bash deploy/install.sh --dev` (the validators' venv with "
                    "nnunetv2) or set MEDSEG_VALIDATORS_PYTHON to a Python that has nnunetv2")
    ws = Workspace.at(tmp_path / "ws")
    assert ingest([msd_subset(tmp_path / "src" / "Task04_Hippocampus", CASES)], ws,
                  IngestConfig(deid_secret="nnunet-acceptance")).labeled_cases == len(CASES)
    raw = tmp_path / "nnUNet_raw"
    name = f"Dataset{DATASET_ID}_MedsegExport"
    summary = export_nnunet_dataset(ws, raw / name)
    assert len(summary.training) == len(CASES) and summary.labels == {"Anterior": 1, "Posterior": 2}

    env = {**os.environ, "nnUNet_raw": str(raw), "nnUNet_preprocessed": str(tmp_path / "nnUNet_preprocessed"),
           "nnUNet_results": str(tmp_path / "nnUNet_results"), "nnUNet_def_n_proc": "1", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": ""}
    done = subprocess.run([str(VALIDATORS_PYTHON), "-c", PLAN_AND_PREPROCESS, "-d", str(DATASET_ID), "-c",
                           "3d_fullres", "--verify_dataset_integrity", "-np", "1", "-npfp", "1"],
                          env=env, cwd=tmp_path, capture_output=True, text=True, timeout=900, check=False)
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    pre = tmp_path / "nnUNet_preprocessed" / name
    fingerprint = json.loads((pre / "dataset_fingerprint.json").read_text())
    plans = json.loads((pre / "nnUNetPlans.json").read_text())
    # nnU-Net read the cases with medseg's geometry: its spacings (z, y, x) are the ingested ones, case by case
    records = {r.case_id: r for r in Catalog(ws.catalog_path).cases()}
    spacings = sorted(tuple(np.round(s, 4)) for s in fingerprint["spacings"])
    assert spacings == sorted(tuple(np.round(records[c].spacing, 4)) for c in summary.training)
    assert "3d_fullres" in plans["configurations"]
    written = {p.name.split(".")[0] for p in (pre / "nnUNetPlans_3d_fullres").iterdir()}
    assert set(summary.training) <= written
