from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from phantom_data import make_plan
from saved_bundles import dice as _dice
from saved_bundles import save as _save

from medseg.inference.sliding import predict_preprocessed
from medseg.io.bundle import BundleError
from medseg.io.volume_store import open_array
from medseg.training.bundle import list_bundles, load_bundle, save_bundle
from medseg.training.network import build_segmenter
from medseg.workspace import Workspace


def test_load_bundle_round_trip_gives_identical_predictions(phantom_ws: Workspace) -> None:
    torch.manual_seed(1)
    plan = make_plan()
    net = build_segmenter(plan, deep_supervision=True)
    path = save_bundle(
        phantom_ws,
        "cnn",
        plan,
        net.state_dict(),
        deep_supervision=True,
        validation={"mean_dice": 0.5},
        training={},
        train_cases=["case000"],
        val_cases=["case003"],
        history=[],
    )
    image = np.asarray(open_array(phantom_ws.preprocessed_case_path("case003"), "0")[...])
    expected = predict_preprocessed(net, image, plan)
    bundle = load_bundle(path)
    assert bundle.version == path.name and bundle.family == "cnn" and not bundle.network.training
    assert bundle.plan == plan
    np.testing.assert_array_equal(predict_preprocessed(bundle.network, image, bundle.plan), expected)
    assert list_bundles(phantom_ws, "cnn") == [path]


def test_load_bundle_reports_missing_and_corrupt_files(phantom_ws: Workspace, tmp_path: Path) -> None:
    path = _save(phantom_ws, {"case003": _dice(0.5)})
    with pytest.raises(BundleError, match="metadata.json not found"):
        load_bundle(tmp_path)
    model = path / "model.pt"
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0xFF
    model.write_bytes(bytes(data))
    with pytest.raises(BundleError, match="corrupt"):
        load_bundle(path)
    model.unlink()
    with pytest.raises(BundleError, match="model.pt not found"):
        load_bundle(path)


def test_a_schema_1_bundle_written_before_ensembles_still_loads_as_a_single_model(phantom_ws: Workspace) -> None:
    import json

    path = _save(phantom_ws, {"case003": _dice(0.5)})
    meta = json.loads((path / "metadata.json").read_text())
    assert meta["schema_version"] == 2 and meta["kind"] == "single"
    del meta["kind"]
    (path / "metadata.json").write_text(json.dumps({**meta, "schema_version": 1}))
    bundle = load_bundle(path)
    assert not bundle.is_ensemble and bundle.networks == [bundle.network]


def test_an_ensemble_bundle_with_a_corrupt_fold_model_is_refused(phantom_ws: Workspace) -> None:
    from saved_bundles import save_ensemble

    path = save_ensemble(phantom_ws, {"case000": _dice(0.5), "case003": _dice(0.6)})
    bundle = load_bundle(path)
    assert bundle.is_ensemble and len(bundle.networks) == 2
    model = path / "fold_1" / "model.pt"
    data = bytearray(model.read_bytes())
    data[-10] ^= 0xFF
    model.write_bytes(bytes(data))
    with pytest.raises(BundleError, match=r"fold_1/model.pt is corrupt"):
        load_bundle(path)
