"""The bundles a worker process keeps loaded: one load per (bundle, device), the most recently used kept."""

from __future__ import annotations

from pathlib import Path

import phantom_data as phantom
import pytest
import torch

from medseg.inference import model_cache
from medseg.inference.model_cache import MAX_MODELS, BundleRef, cached_bundle
from medseg.io.bundle import BundleError
from medseg.training.bundle import save_bundle
from medseg.training.network import build_segmenter
from medseg.workspace import Workspace


def _bundles(root: Path, n: int) -> list[Path]:
    ws = Workspace.at(root).ensure()
    plan = phantom.make_plan()
    out = []
    for seed in range(n):
        torch.manual_seed(seed)
        net = build_segmenter(plan, deep_supervision=False)
        out.append(save_bundle(ws, "cnn", plan, net.state_dict(), deep_supervision=False,
                               validation={"mean_dice": 0.1}, training={}, train_cases=[], val_cases=[], history=[]))
    return out


def test_each_bundle_is_loaded_once_and_the_least_recently_used_is_dropped(tmp_path: Path) -> None:
    assert MAX_MODELS == 2
    first, second, third = _bundles(tmp_path / "ws", 3)
    model_cache.clear()
    cpu = torch.device("cpu")
    start = model_cache.loads()
    a = cached_bundle(first, cpu)
    assert cached_bundle(str(first), cpu) is a and model_cache.loads() == start + 1  # a str path: the same key
    assert a.version == first.name and not a.network.training  # eval mode
    b = cached_bundle(second, cpu)
    cached_bundle(first, cpu)  # first is now the most recently used ...
    cached_bundle(third, cpu)  # ... so the third load drops the second
    assert model_cache.loads() == start + 3
    assert cached_bundle(first, cpu) is a and model_cache.loads() == start + 3
    assert cached_bundle(second, cpu) is not b and model_cache.loads() == start + 4
    model_cache.clear()


def test_a_bundle_ref_reads_the_metadata_only(tmp_path: Path) -> None:
    (bundle,) = _bundles(tmp_path / "ws", 1)
    ref = BundleRef.read(bundle)
    assert (ref.path, ref.family, ref.version) == (bundle.resolve(), "cnn", bundle.name)
    with pytest.raises(BundleError, match="metadata.json not found"):
        BundleRef.read(tmp_path)
