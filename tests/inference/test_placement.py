"""Device, torch threads and task resources of a case on a Dask worker (pure rules, no GPU needed)."""

from __future__ import annotations

import pytest
import torch

from medseg.inference.placement import case_threads, pinning_warning, task_resources, worker_device


@pytest.mark.parametrize(
    ("choice", "cuda", "expected"),
    [
        ("cpu", True, "cpu"),  # asked for the CPU: a GPU worker runs its case on the CPU
        ("auto", True, "cuda:0"),  # a pinned worker's one GPU is cuda:0, whatever the node's index
        (None, True, "cuda:0"),
        ("auto", False, "cpu"),
        ("cuda", True, "cuda:0"),
    ],
)
def test_worker_device(choice: str | None, cuda: bool, expected: str) -> None:
    assert worker_device(choice, cuda) == torch.device(expected)


def test_cuda_on_a_worker_without_a_gpu_says_how_to_start_gpu_workers() -> None:
    with pytest.raises(RuntimeError, match="no CUDA device.*CUDA_VISIBLE_DEVICES and --resources GPU=1"):
        worker_device("cuda", False)


def test_a_worker_that_sees_several_gpus_is_told_to_pin_one() -> None:
    assert pinning_warning(torch.device("cuda", 0), 1) is None
    assert pinning_warning(torch.device("cpu"), 4) is None
    warning = pinning_warning(torch.device("cuda", 0), 4)
    assert warning is not None and "sees 4 GPUs" in warning and "CUDA_VISIBLE_DEVICES" in warning


@pytest.mark.parametrize(
    ("choice", "workers", "expected"),
    [
        ("auto", [{"GPU": 1}, {"GPU": 1}], {"GPU": 1}),
        ("cuda", [{}, {"GPU": 1}], {"GPU": 1}),  # mixed cluster: the cases go to the GPU workers only
        ("auto", [{}, {}], None),  # no GPU worker: any worker, one case per thread
        ("auto", [], None),
        ("cpu", [{"GPU": 1}], None),  # CPU inference may use any worker
        ("auto", [{"GPU": 0.5}], None),  # a worker cannot run a task asking for a whole GPU
    ],
)
def test_task_resources(choice: str, workers: list[dict[str, float]], expected: dict[str, float] | None) -> None:
    assert task_resources(choice, workers) == expected


def test_case_threads() -> None:
    """A case holding a GPU has its worker's threads; otherwise each worker thread runs a case on one."""
    assert case_threads(4, holds_gpu=True) == 4
    assert case_threads(4, holds_gpu=False) == 1
    assert case_threads(1, holds_gpu=False) == 1
    assert case_threads(0, holds_gpu=True) == 1
