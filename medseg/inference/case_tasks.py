"""What every inference case task does on its Dask worker, and what it reports back.

A case task (:func:`medseg.inference.cluster_infer.infer_case_task`,
:func:`medseg.inference.predict_inputs.predict_input_task`) takes the case, the config and the
bundle folder; on the worker it calls :func:`on_worker` (device, torch threads, the worker's name)
and :func:`medseg.inference.model_cache.cached_bundle` (one model load per worker process), runs the
same per-case function as in-process inference, and returns a :class:`CaseRun`. Exceptions
propagate: :func:`fan_out_cases` retries a case once (:data:`CASE_RETRIES`) and then reports it
failed with ``"ExcType: message"``; the other cases go on. A worker that dies mid-case is no retry:
the scheduler runs its cases on the remaining workers, and the case writers are atomic (every
output is written under a temporary name and renamed into place, the Zarr store last), so the
half-written outputs of a killed case are never taken for a finished prediction.
"""

from __future__ import annotations

import logging
import os
import resource
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
from distributed import Client, get_worker

from medseg.config import DeviceChoice
from medseg.inference.placement import case_threads, pinning_warning, task_resources, worker_device
from medseg.preprocess.fanout import Outcome, fan_out

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Tries after a case task raised (a transient error: a file system hiccup, CUDA out of memory
#: while another process held the GPU); a deterministic failure costs one more attempt.
CASE_RETRIES = 1

_warned: set[str] = set()


@dataclass(frozen=True)
class CaseRun:
    """What a worker did with one case (picklable; returned by the case tasks).

    Attributes:
        case_id: the case.
        status: ``predicted``, ``skipped`` (already done) or the task's own status (``medseg predict``).
        seconds: wall time of the case on the worker.
        worker: the Dask worker's name (``dask worker --name``; a LocalCluster's 0, 1, ...).
        device: where the network ran (``cpu``, ``cuda:0``).
        peak_rss_mib: peak resident memory of the worker process so far (MiB).
        seg_file: the DICOM SEG written (``medseg infer``), or None.
        detail: the task's own result (``medseg predict``: its ``PredictRow``).
    """

    case_id: str
    status: str
    seconds: float
    worker: str
    device: str
    peak_rss_mib: float
    seg_file: str | None = None
    detail: Any = None


@dataclass(frozen=True)
class WorkerPlace:
    """A case's place on its worker: the device and the worker's name."""

    device: torch.device
    worker: str


def worker_name_and_threads() -> tuple[str, int]:
    """This Dask worker's name and thread count (``pid-<n>``, 1 outside a worker)."""
    try:
        worker = get_worker()
    except ValueError:
        return f"pid-{os.getpid()}", 1
    return str(worker.name), int(getattr(worker.state, "nthreads", 1))


def on_worker(device: DeviceChoice | str | None, holds_gpu: bool) -> WorkerPlace:
    """Place the next case on this worker: resolve its device and set torch's threads (:mod:`placement`)."""
    name, nthreads = worker_name_and_threads()
    dev = worker_device(device, torch.cuda.is_available())
    warning = pinning_warning(dev, torch.cuda.device_count() if dev.type == "cuda" else 0)
    if warning and warning not in _warned:
        _warned.add(warning)
        log.warning("worker %s: %s", name, warning)
    torch.set_num_threads(case_threads(nthreads, holds_gpu))
    return WorkerPlace(dev, name)


def peak_rss_mib() -> float:
    """Peak resident memory of this process (MiB)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024  # bytes on macOS, KiB on Linux


def case_resources(client: Client, device: DeviceChoice | str | None) -> dict[str, float] | None:
    """The resources each case asks of ``client``'s cluster (:func:`placement.task_resources`)."""
    workers = client.scheduler_info().get("workers", {})
    return task_resources(device, [w.get("resources") or {} for w in workers.values()])


def fan_out_cases(
    task: Callable[..., CaseRun],
    items: Sequence[T],
    client: Client,
    device: DeviceChoice | str | None,
    on_outcome: Callable[[Outcome[T, CaseRun], int, int], None] | None = None,
    **kwargs: Any,
) -> list[Outcome[T, CaseRun]]:
    """Run ``task(item, holds_gpu=..., **kwargs)`` for every item on ``client``'s workers.

    One task per case (:func:`medseg.preprocess.fanout.fan_out`), asking for ``GPU=1`` on a cluster
    with GPU workers; ``on_outcome(outcome, done, total)`` in completion order.

    Returns:
        One outcome per item, in the order of ``items``.
    """
    resources = case_resources(client, device)
    return fan_out(task, items, client, retries=CASE_RETRIES, on_outcome=on_outcome, resources=resources,
                   holds_gpu=resources is not None, **kwargs)
