"""One Dask worker per GPU: the GPU ids of a node and the pinning of LocalCluster workers (on CPU)."""

from __future__ import annotations

import os

import pytest

from medseg.config import DaskConfig
from medseg.preprocess.fanout import fan_out
from medseg.runtime.cluster import dask_client
from medseg.runtime.gpu_workers import next_free_gpu, pin_gpu, pinned_gpu, visible_gpu_ids


@pytest.mark.parametrize(
    ("visible", "count", "expected"),
    [
        (None, 0, []),  # no GPU / CPU build of torch
        (None, 2, ["0", "1"]),  # unset: every GPU of the node
        ("2,3", 2, ["2", "3"]),  # the node's GPUs 2 and 3: their workers see exactly those
        (" 3, 1,", 2, ["3", "1"]),
        ("0,1,2,3", 2, ["0", "1"]),  # CUDA stopped at an invalid entry: device_count rules
        ("GPU-5e2a,MIG-77c1", 2, ["GPU-5e2a", "MIG-77c1"]),
        ("", 0, []),
        ("-1", 0, []),
    ],
)
def test_visible_gpu_ids(visible: str | None, count: int, expected: list[str]) -> None:
    assert visible_gpu_ids(visible, count) == expected


def test_next_free_gpu_gives_each_gpu_one_worker_then_goes_round() -> None:
    gpus = ["2", "5"]
    assert next_free_gpu(gpus, []) == "2"
    assert next_free_gpu(gpus, ["2"]) == "5"
    assert next_free_gpu(gpus, [None, "5"]) == "2"  # an unpinned spec counts for no GPU
    assert next_free_gpu(gpus, ["2", "5"]) == "2"
    with pytest.raises(ValueError, match="no GPU"):
        next_free_gpu([], [])


def test_pin_gpu_adds_the_device_and_the_resource_and_keeps_the_rest() -> None:
    spec = {"cls": object, "options": {"nthreads": 2, "env": {"A": "1"}, "resources": {"MEM": 4}}}
    pinned = pin_gpu(spec, "3")
    assert pinned["options"] == {"nthreads": 2, "env": {"A": "1", "CUDA_VISIBLE_DEVICES": "3"},
                                 "resources": {"MEM": 4, "GPU": 1}}
    assert pinned_gpu(pinned) == "3" and pinned_gpu(spec) is None
    assert spec["options"]["env"] == {"A": "1"}  # the LocalCluster's shared spec is not changed


def test_a_gpu_local_cluster_pins_one_gpu_per_worker_process() -> None:
    """Runs on CPU: the workers only get their CUDA_VISIBLE_DEVICES and the GPU resource."""
    with dask_client(DaskConfig(n_workers=7, threads_per_worker=1, memory_limit="1GiB"), gpus=["3", "5"]) as client:
        visible = client.run(os.getenv, "CUDA_VISIBLE_DEVICES")
        workers = client.scheduler_info()["workers"].values()
        outcomes = fan_out(os.getenv, ["CUDA_VISIBLE_DEVICES"], client, resources={"GPU": 1})  # runs there
    assert sorted(visible.values()) == ["3", "5"]  # one worker per GPU (dask.n_workers is not used)
    assert [w["resources"] for w in workers] == [{"GPU": 1}, {"GPU": 1}]
    assert outcomes[0].error is None and outcomes[0].value in ("3", "5")
