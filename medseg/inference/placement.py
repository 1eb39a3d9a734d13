"""Where a case runs inside a Dask worker: its device, its torch threads, and what its task asks of the cluster.

Rules (pure functions, tested on CPU):

* device (:func:`worker_device`): ``train.device`` as resolved in the worker process. A GPU worker is
  pinned to one GPU (``CUDA_VISIBLE_DEVICES``, see :mod:`medseg.runtime.gpu_workers`), which it
  sees as ``cuda:0``; a worker that sees several GPUs also uses ``cuda:0`` and says so
  (:func:`pinning_warning`), since nothing tells it which of them is its own.
* task resources (:func:`task_resources`): on a cluster where some worker advertises ``GPU``
  and the device may be CUDA, every case asks for ``GPU=1``: it runs only on GPU workers, one case
  per GPU at a time, whatever their ``--nthreads``. Otherwise no resource: any worker, one case
  per worker thread.
* torch threads (:func:`case_threads`): a case that holds a GPU has its worker to itself and uses
  every worker thread for its CPU work; otherwise each worker thread runs its own case on one
  torch thread, so N workers × T threads use N × T cores (``train.num_threads`` is for
  in-process inference only).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import torch

from medseg.config import DeviceChoice
from medseg.runtime.gpu_workers import GPU_RESOURCE


def worker_device(choice: DeviceChoice | str | None, cuda_available: bool) -> torch.device:
    """The device of a worker's cases: ``cuda:0`` (its pinned GPU) or ``cpu``.

    Args:
        choice: ``train.device`` (``auto``/None: CUDA when the worker has it).
        cuda_available: ``torch.cuda.is_available()`` in the worker.

    Raises:
        RuntimeError: ``cuda`` asked for on a worker without a CUDA device.
    """
    value = DeviceChoice.AUTO if choice is None else DeviceChoice(str(choice))
    if value == DeviceChoice.CPU:
        return torch.device("cpu")
    if cuda_available:
        return torch.device("cuda", 0)
    if value == DeviceChoice.CUDA:
        raise RuntimeError("train.device=cuda but this Dask worker has no CUDA device; start GPU workers with "
                           "CUDA_VISIBLE_DEVICES and --resources GPU=1 (deploy/dask/README.md), "
                           "or use train.device=auto")
    return torch.device("cpu")


def pinning_warning(device: torch.device, visible_count: int) -> str | None:
    """Why a CUDA worker is not pinned to one GPU (it sees ``visible_count``), or None when it is."""
    if device.type != "cuda" or visible_count <= 1:
        return None
    return (f"this Dask worker sees {visible_count} GPUs and uses cuda:0: give every GPU worker its own "
            "CUDA_VISIBLE_DEVICES (deploy/dask/README.md), or every worker of the node shares GPU 0")


def task_resources(choice: DeviceChoice | str | None,
                   worker_resources: Iterable[Mapping[str, float]]) -> dict[str, float] | None:
    """The Dask resources every case task asks for: ``{"GPU": 1}`` or None (any worker).

    Args:
        choice: ``train.device``.
        worker_resources: the resources each worker of the cluster advertises (scheduler info).
    """
    value = DeviceChoice.AUTO if choice is None else DeviceChoice(str(choice))
    if value == DeviceChoice.CPU:
        return None
    if any(float(r.get(GPU_RESOURCE, 0)) >= 1 for r in worker_resources):
        return {GPU_RESOURCE: 1}
    return None


def case_threads(worker_nthreads: int, holds_gpu: bool) -> int:
    """torch intra-op threads of one case on a worker with ``worker_nthreads`` Dask threads."""
    return max(1, worker_nthreads) if holds_gpu else 1
