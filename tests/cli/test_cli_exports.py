"""``medseg export-dataset`` and ``medseg export-model``: outputs and one-line errors."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from medseg.cli.main import app
from medseg.config import IngestConfig
from medseg.geometry import Geometry
from medseg.ingest.run import ingest
from medseg.io.nifti import write_nifti
from medseg.workspace import Workspace

runner = CliRunner()


def _workspace(tmp_path: Path) -> Path:
    """Two labeled NIfTI image/label pairs, ingested."""
    g = Geometry.create((2.0, 0.9, 0.8), (-10.0, 5.0, 3.0))
    for i in range(2):
        image = np.random.default_rng(i).integers(-100, 300, (5, 8, 9)).astype(np.int16)
        label = np.zeros(image.shape, np.uint8)
        label[1:3, 2:5, 2:6] = 1
        write_nifti(tmp_path / "src" / f"p{i}.nii.gz", image, g)
        write_nifti(tmp_path / "src" / f"p{i}_seg.nii.gz", label, g)
    ingest([tmp_path / "src"], Workspace.at(tmp_path / "ws"), IngestConfig(deid_secret="cli-export-secret"))
    return tmp_path / "ws"


def test_export_dataset_writes_an_nnunet_folder_and_refuses_to_overwrite(tmp_path: Path) -> None:
    ws = _workspace(tmp_path)
    out = tmp_path / "exported"
    result = runner.invoke(app, ["export-dataset", "--format", "nnunet", str(out), "--workspace", str(ws)])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())  # rich wraps long lines
    assert "2 training, 0 test cases" in text and "DatasetNNN_Name" in text  # with the naming hint
    doc = json.loads((out / "dataset.json").read_text())
    assert doc["numTraining"] == 2 and doc["labels"] == {"background": 0, "foreground": 1}
    assert len(list((out / "imagesTr").glob("*_0000.nii.gz"))) == 2
    again = runner.invoke(app, ["export-dataset", str(out), "--workspace", str(ws)])
    assert again.exit_code == 1 and "exists" in again.output and "Traceback" not in again.output  # no --force
    forced = runner.invoke(app, ["export-dataset", str(out), "--force", "--workspace", str(ws)])
    assert forced.exit_code == 0, forced.output
    named = runner.invoke(app, ["export-dataset", str(tmp_path / "Dataset123_Two"), "--workspace", str(ws)])
    assert named.exit_code == 0 and "DatasetNNN_Name" not in " ".join(named.output.split())


def test_export_commands_name_what_is_missing(tmp_path: Path) -> None:
    result = runner.invoke(app, ["export-dataset", str(tmp_path / "o"), "--workspace", str(tmp_path / "none")])
    assert result.exit_code == 1 and "medseg ingest" in result.output
    (tmp_path / "ws").mkdir()
    result = runner.invoke(app, ["export-model", str(tmp_path / "m"), "--workspace", str(tmp_path / "ws")])
    assert result.exit_code == 1 and "'cnn'" in result.output and "medseg train" in result.output


def test_export_model_refuses_an_ensemble_with_the_reason(tmp_path: Path) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "training"))
    import phantom_data
    from saved_bundles import save_ensemble

    ws = phantom_data.write_phantom_workspace(tmp_path / "ws", n_train=2, n_val=0)
    bundle = save_ensemble(ws, {c: {"organ": 0.5, "lesion": 0.5} for c in ("case000", "case001")})
    result = runner.invoke(app, ["export-model", "--format", "monai-bundle", str(tmp_path / "m"), "--model",
                                 str(bundle), "--workspace", str(tmp_path / "ws")])
    assert result.exit_code == 1 and "ensemble" in result.output and not (tmp_path / "m").exists()
