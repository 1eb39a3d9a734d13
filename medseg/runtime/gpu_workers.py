"""One Dask worker per GPU: which GPUs a node has, and a LocalCluster that pins one to each worker.

A worker that runs on a GPU sees exactly one device: its ``CUDA_VISIBLE_DEVICES`` names one GPU of
the node, so inside the worker that GPU is ``cuda:0`` (the way ``dask worker --resources GPU=1`` is
run by hand, one process per GPU, see deploy/dask/README.md). Every such worker advertises the Dask
resource ``GPU=1``; a task that asks for ``resources={"GPU": 1}`` then runs only on such a worker, and
at most one at a time per worker (one case per device).

The pinning is pure (:func:`visible_gpu_ids`, :func:`next_free_gpu`, :func:`pin_gpu`) and tested on
CPU; :class:`GpuPinnedCluster` applies it to each worker a LocalCluster starts. A worker process
that dies is restarted by its Nanny with the same environment, so it keeps its GPU.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any, Final

from distributed import LocalCluster

#: The Dask worker resource of one GPU (``dask worker --resources GPU=1``).
GPU_RESOURCE: Final = "GPU"
VISIBLE_DEVICES_VAR: Final = "CUDA_VISIBLE_DEVICES"


def visible_gpu_ids(visible: str | None, device_count: int) -> list[str]:
    """The GPUs of this process, as ``CUDA_VISIBLE_DEVICES`` entries: one per worker to start.

    Args:
        visible: this process's ``CUDA_VISIBLE_DEVICES`` (None: unset, every GPU of the node).
            Entries are indices (``"2,3"``), ``GPU-<uuid>`` or ``MIG-<uuid>`` names; they are kept
            as written, so a worker pinned to ``"3"`` sees the node's GPU 3.
        device_count: the devices CUDA reports to this process (``torch.cuda.device_count()``, which
            already honours ``visible``: 0 without a GPU or a CUDA build).

    Returns:
        ``device_count`` ids: the first entries of ``visible`` (CUDA ignores the entries after an
        invalid one, which ``device_count`` reflects), or ``"0"``, ``"1"`` ... when unset.
    """
    if device_count <= 0:
        return []
    if visible is None:
        return [str(i) for i in range(device_count)]
    entries = [e.strip() for e in visible.split(",") if e.strip()]
    return entries[:device_count]


def node_gpu_ids() -> list[str]:
    """:func:`visible_gpu_ids` of this process (torch's device count; no CUDA context is created)."""
    import torch

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    return visible_gpu_ids(os.environ.get(VISIBLE_DEVICES_VAR), count)


def pinned_gpu(spec: Mapping[str, Any]) -> str | None:
    """The GPU a worker spec (``{"cls": ..., "options": {...}}``) is pinned to, or None."""
    env = spec.get("options", {}).get("env") or {}
    value = env.get(VISIBLE_DEVICES_VAR)
    return None if value is None else str(value)


def next_free_gpu(gpus: Sequence[str], pinned: Sequence[str | None]) -> str:
    """The GPU for the next worker: the first of ``gpus`` with the fewest workers ``pinned`` to it.

    With as many workers as GPUs every GPU gets one worker (more workers than GPUs: round robin).

    Raises:
        ValueError: ``gpus`` is empty.
    """
    if not gpus:
        raise ValueError("no GPU to pin a worker to")
    load = {g: 0 for g in gpus}
    for gpu in pinned:
        if gpu in load:
            load[gpu] += 1
    return min(gpus, key=lambda g: load[g])  # min keeps the first of equals: GPU order


def pin_gpu(spec: Mapping[str, Any], gpu: str) -> dict[str, Any]:
    """A copy of the worker ``spec`` whose process sees only ``gpu`` and advertises ``GPU=1``.

    The Nanny sets ``env`` in the worker process before the worker starts (spawned or forked), and
    CUDA reads ``CUDA_VISIBLE_DEVICES`` when it initialises, later, at the first CUDA call.
    """
    options = dict(spec.get("options", {}))
    options["env"] = {**dict(options.get("env") or {}), VISIBLE_DEVICES_VAR: gpu}
    options["resources"] = {**dict(options.get("resources") or {}), GPU_RESOURCE: 1}
    return {**spec, "options": options}


class GpuPinnedCluster(LocalCluster):
    """A LocalCluster whose every worker is pinned to one of ``gpus`` (:func:`pin_gpu`).

    Started with no workers and scaled to one per GPU, so that every worker spec is made by
    :meth:`new_worker_spec` (LocalCluster's own first workers would all share one spec).
    """

    def __init__(self, gpus: Sequence[str], **kwargs: Any) -> None:
        if not gpus:
            raise ValueError("GpuPinnedCluster needs at least one GPU")
        self.gpus = tuple(gpus)
        super().__init__(n_workers=0, **kwargs)
        self.scale(len(self.gpus))

    def new_worker_spec(self) -> dict[Any, dict[str, Any]]:
        """The next worker's spec: LocalCluster's, pinned to the GPU with the fewest workers."""
        spec: dict[Any, dict[str, Any]] = super().new_worker_spec()
        pinned = [pinned_gpu(s) for s in self.worker_spec.values()]
        return {name: pin_gpu(s, next_free_gpu(self.gpus, pinned)) for name, s in spec.items()}
