"""Where the cases of one inference run go: this process, a LocalCluster, or the configured Dask cluster.

:func:`choose_layout` is the rule (pure; ``infer.workers``, ``dask``, ``train.device``, this node's
GPUs, the number of cases), :func:`infer_client` opens the Dask client it names. The rule:

* ``infer.workers: 1``, or no case: in this process, one case after the other, as before the
  fan-out existed (the model loaded once; torch on ``train.num_threads`` cores, or the GPU).
* ``dask.address`` set: that cluster's workers, unless the device may be a GPU of this machine and
  no worker of the cluster advertises ``GPU`` (``auto`` never moves inference from a GPU to CPUs).
* one case (and no ``dask.address``): in this process (a LocalCluster would only add its start).
* a GPU node (``train.device`` auto/cuda and CUDA here): one LocalCluster worker per GPU, each
  pinned to its own (:mod:`medseg.runtime.gpu_workers`); ``infer.workers: n`` uses at most n of
  them; one GPU: in this process.
* a CPU node: ``infer.workers: n`` (n > 1): a LocalCluster of n workers × ``dask.threads_per_worker``
  threads, one case per thread on one torch thread. ``auto``: the LocalCluster of ``dask.n_workers``
  workers when it covers every core (``n_workers × threads_per_worker >= cores``: with fewer, one
  process on all cores is faster) and there are at least :data:`AUTO_MIN_CASES_PER_WORKER` cases per
  worker (its start, ~7 s on a busy 2-core machine for the imports and the model load, then pays
  for itself; ``bench/scale.py``), else in this process.

Worker counts never exceed the cases. The outputs do not depend on the layout (same files, byte
for byte: ``tests/inference/test_infer_fanout.py``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Literal

from distributed import Client

from medseg.config import DaskConfig, DeviceChoice, MedsegConfig
from medseg.runtime.cluster import dask_client

#: ``infer.workers: auto`` on a CPU node fans out once there are this many cases per worker.
AUTO_MIN_CASES_PER_WORKER = 2

#: What a LocalCluster's inference workers import before their first case (torch, MONAI, the model code).
INFER_WORKER_MODULES = ("torch", "medseg.inference.cluster_infer", "medseg.inference.predict_inputs")

LayoutKind = Literal["in-process", "local", "cluster"]


@dataclass(frozen=True)
class InferLayout:
    """Where a run's cases go.

    Attributes:
        kind: ``in-process``, ``local`` (a LocalCluster started for the run) or ``cluster``
            (``dask.address``).
        workers: worker processes of a LocalCluster (1 in-process; 0: whatever the cluster has).
        gpus: ``CUDA_VISIBLE_DEVICES`` of each LocalCluster worker (one GPU each), or empty.
        reason: why, for the run log and the stage stats.
    """

    kind: LayoutKind
    workers: int = 1
    gpus: tuple[str, ...] = field(default_factory=tuple)
    reason: str = ""

    def describe(self) -> str:
        """One phrase: ``in-process``, ``LocalCluster 2 workers × 1 thread``, ``LocalCluster 4 GPUs``, ``cluster``."""
        if self.kind == "local":
            return f"LocalCluster {len(self.gpus)} GPU workers" if self.gpus else f"LocalCluster {self.workers} workers"
        return self.kind


def choose_layout(
    workers: int | Literal["auto"],
    dask: DaskConfig,
    device: DeviceChoice | str | None,
    gpu_ids: Sequence[str],
    n_cases: int,
    cluster_has_gpu_workers: bool | None = None,
    cores: int = 1,
) -> InferLayout:
    """The layout of a run (see the module doc for the rule).

    Args:
        workers: ``infer.workers``.
        dask: ``cfg.dask`` (``address``, ``n_workers``).
        device: ``train.device``.
        gpu_ids: this node's GPUs (:func:`medseg.runtime.gpu_workers.node_gpu_ids`; empty on CPU).
        n_cases: cases to predict (those not already done).
        cluster_has_gpu_workers: whether a worker of ``dask.address`` advertises ``GPU`` (None:
            not asked, e.g. no address).
        cores: this machine's cores (``infer.workers: auto`` on CPU).
    """
    choice = DeviceChoice.AUTO if device is None else DeviceChoice(str(device))
    local_gpus = list(gpu_ids) if choice != DeviceChoice.CPU else []
    if n_cases == 0:
        return InferLayout("in-process", reason="no case to predict")
    if workers == 1:
        return InferLayout("in-process", reason="infer.workers=1")
    if dask.address:
        if local_gpus and not cluster_has_gpu_workers:
            return InferLayout("in-process", reason=f"a GPU here and no GPU worker at {dask.address}")
        return InferLayout("cluster", workers=0, reason=f"dask.address={dask.address}")
    if n_cases == 1:
        return InferLayout("in-process", reason="one case to predict")
    if local_gpus:
        n = min(len(local_gpus), n_cases, len(local_gpus) if workers == "auto" else workers)
        if n <= 1:
            return InferLayout("in-process", reason="one GPU")
        return InferLayout("local", workers=n, gpus=tuple(local_gpus[:n]), reason=f"{n} GPUs, one worker each")
    if workers == "auto":
        threads = dask.n_workers * dask.threads_per_worker
        if dask.n_workers <= 1 or threads < cores:
            return InferLayout("in-process", reason=f"infer.workers=auto: dask.n_workers × threads_per_worker = "
                               f"{threads} thread(s) for {cores} cores (this process uses them all)")
        if n_cases < AUTO_MIN_CASES_PER_WORKER * dask.n_workers:
            return InferLayout("in-process", reason=f"infer.workers=auto: {n_cases} cases < "
                               f"{AUTO_MIN_CASES_PER_WORKER} per worker of dask.n_workers={dask.n_workers}")
        n = dask.n_workers
    else:
        n = workers
    n = min(n, n_cases)
    return InferLayout("local", workers=n, reason=f"{n} workers × {dask.threads_per_worker} thread(s) on CPU")


@contextmanager
def infer_client(cfg: MedsegConfig, layout: InferLayout) -> Iterator[Client | None]:
    """The Dask client of ``layout`` (None in-process); a LocalCluster is closed on exit."""
    if layout.kind == "in-process":
        yield None
        return
    if layout.kind == "cluster":
        with dask_client(cfg.dask) as client:
            yield client
        return
    with dask_client(cfg.dask, preload=INFER_WORKER_MODULES, gpus=layout.gpus, n_workers=layout.workers) as client:
        yield client


def machine_cores() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def cluster_gpu_workers(cfg: DaskConfig) -> bool | None:
    """Whether a worker of ``cfg.address`` advertises the ``GPU`` resource (None without an address)."""
    if not cfg.address:
        return None
    from medseg.inference.placement import task_resources

    with dask_client(cfg) as client:
        info = client.scheduler_info()
    return task_resources("auto", [w.get("resources", {}) for w in info.get("workers", {}).values()]) is not None
