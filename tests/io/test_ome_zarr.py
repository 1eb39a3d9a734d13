"""Every kind of Zarr store medseg writes is a valid OME-Zarr 0.5 image that other tools open.

The stores come from medseg's own writers on real data (two MSD hippocampus cases): ``volumes/`` (ingest),
``preprocessed/`` (preprocess: float image, ``fg/`` arrays), a prediction store (inference) and a
multi-channel store. ``ome-zarr-models`` validates each (image, labels group, every image-label) and
``ome-zarr-py``'s reader (napari's OME-Zarr plugin) opens the image and its labels; both live in
``.venv-validators`` (``deploy/install.sh --dev``), as ome-zarr-models pins another pydantic than medseg's.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from msd_subset import msd_subset

from medseg.config_loader import load_config
from medseg.geometry import Geometry
from medseg.io.volume_store import CaseVolume, axis_translation, label_color, read_case, write_case

REPO = Path(__file__).resolve().parents[2]
VALIDATORS_PYTHON = REPO / ".venv-validators" / "bin" / "python"
CASES = ["hippocampus_003", "hippocampus_004"]


def _validate(paths: list[Path]) -> dict[str, Any]:
    if not VALIDATORS_PYTHON.is_file():
        pytest.fail(f"{VALIDATORS_PYTHON} is missing: `bash deploy/install.sh --dev` makes the validators' venv")
    done = subprocess.run([str(VALIDATORS_PYTHON), str(Path(__file__).with_name("ome_zarr_check.py")),
                           *map(str, paths)], capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    result: dict[str, Any] = json.loads(done.stdout)
    return result


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One store of every kind, each written by the writer the pipeline uses."""
    from medseg.inference.predict import _write_prediction_store
    from medseg.ingest.run import ingest
    from medseg.io.catalog import Catalog
    from medseg.preprocess.run import run_preprocess
    from medseg.workspace import Workspace

    tmp = tmp_path_factory.mktemp("ome")
    ws = Workspace.at(tmp / "ws")
    cfg = load_config(None, [f"workspace={ws.root}", "ingest.deid_secret=ome-test", "dask.n_workers=1",
                             "split.test_fraction=0.0", "split.val_fraction=0.0"])
    ingest([msd_subset(tmp / "msd", CASES)], ws, cfg.ingest)
    case = Catalog(ws.catalog_path).cases()[0]
    run_preprocess(ws, cfg, None)
    volume = read_case(case.volume_path)
    prediction = tmp / "pred.zarr"
    _write_prediction_store(prediction, case.case_id, volume.image, volume.geometry, volume.labels["gt"],
                            volume.label_names, {"family": "cnn"})
    multi = write_case(tmp / "multi.zarr", CaseVolume(
        "multi", volume.image.astype(np.float32), volume.geometry, {"gt": volume.labels["gt"]}, volume.label_names,
        channels=[volume.image.astype(np.float32)], channel_names=["T1", "T1copy"]))
    return {"volume": Path(case.volume_path), "preprocessed": ws.preprocessed_case_path(case.case_id),
            "prediction": prediction, "multi-channel": multi}


def test_every_store_kind_validates_as_ome_zarr_and_opens_in_ome_zarr_py(stores: dict[str, Path]) -> None:
    report = _validate(list(stores.values()))
    for kind, path in stores.items():
        found = report[str(path)]
        assert found["valid"], f"{kind} store {path}: {found['error']}"
        assert found["axes"] == ["z", "y", "x"]
        case = read_case(path)
        (label_name,) = case.labels
        assert found["labels"] == {label_name: {
            "names": {str(v): n for v, n in case.label_names.items()},
            "colors": {str(v): list(label_color(v)) for v in case.label_names},
        }}, kind
        read = {r["spec"]: r["shapes"] for r in found["read"]}
        assert read["Multiscales"] == [list(case.image.shape)], kind  # the image, as napari would load it
        assert read["Label"] == [list(case.image.shape)], kind  # and its label layer
    assert read_case(stores["volume"]).label_names == {1: "Anterior", 2: "Posterior"}


def test_a_store_without_dimension_names_is_what_the_validator_rejects(stores: dict[str, Path],
                                                                       tmp_path: Path) -> None:
    """The check has teeth: the old layout (no ``dimension_names``) fails it, naming the missing field."""
    import shutil

    old = tmp_path / "old.zarr"
    shutil.copytree(stores["volume"], old)
    meta_path = old / "0" / "zarr.json"
    meta = json.loads(meta_path.read_text())
    del meta["dimension_names"]
    meta_path.write_text(json.dumps(meta))
    found = _validate([old])[str(old)]
    assert not found["valid"] and "dimension_names" in found["error"]


def test_the_translation_is_the_origin_along_the_array_axes() -> None:
    """Axial: voxel [0,0,0] at LPS (x, y, z) = (10, -20, 30) -> translation (z, y, x) = (30, -20, 10).
    Sagittal (slices along L, rows towards inferior, columns towards posterior): (10, -30, -20)."""
    axial = Geometry.create([3.0, 0.9, 0.9], [10.0, -20.0, 30.0])
    assert axis_translation(axial) == [30.0, -20.0, 10.0]
    sagittal = Geometry.create([1.0, 1.0, 1.0], [10.0, -20.0, 30.0],
                               [[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])
    assert axis_translation(sagittal) == [10.0, -30.0, -20.0]
