"""The training DataLoader: worker count rules and identical batches whatever the number of workers."""

from __future__ import annotations

import torch
from phantom_data import tiny_config

from medseg.training.augment import AugmentParams
from medseg.training.loop import loader_workers, make_loader
from medseg.training.patches import PatchDataset, load_cases
from medseg.workspace import Workspace


def test_worker_rules() -> None:
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert loader_workers(cpu) == 0 and loader_workers(cpu, tiny_config().train) == 0
    assert 0 <= loader_workers(cuda) <= 8
    assert loader_workers(cpu, tiny_config(num_workers=3).train) == 3


def test_batches_do_not_depend_on_the_number_of_workers(phantom_ws: Workspace) -> None:
    cases = load_cases({c: phantom_ws.preprocessed_case_path(c) for c in ("case000", "case001")})
    ds = PatchDataset(cases, (16, 32, 32), 4, 0.5, seed=2, augment=AugmentParams())
    ds.set_epoch(1)
    single = list(make_loader(ds, 2, torch.device("cpu"), tiny_config(num_workers=0).train))
    multi = list(make_loader(ds, 2, torch.device("cpu"), tiny_config(num_workers=2).train))
    assert len(single) == len(multi) == 2
    for a, b in zip(single, multi, strict=True):
        assert torch.equal(a["image"], b["image"]) and torch.equal(a["label"], b["label"])
