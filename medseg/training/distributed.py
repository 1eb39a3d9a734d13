"""Data-parallel training over ``torch.distributed``: the rank's place in the group and its collectives.

A run with ``train.processes`` = N > 1 is N processes (ranks) started by ``torchrun`` (see
:mod:`medseg.training.launch`); the entry point (:mod:`medseg.cli.train_rank`) joins the process group
(NCCL on GPUs, gloo on CPUs) and hands the library a :class:`DistContext`. Every function here is a
no-op for :data:`SINGLE` (one process), so the single-process path runs no collective at all.

The contract of a distributed run:

* ``train.batch_size`` is the *global* batch: rank ``r`` draws samples ``r*B .. r*B+B-1`` (``B`` =
  batch_size / N) of every global batch of the same seeded stream
  (:class:`medseg.training.rank_sampler.RankSliceSampler`), so N processes see exactly the batches of
  one process.
* Gradients are averaged by ``DistributedDataParallel``; the batch Dice sums its intersections and
  denominators over the ranks (:class:`medseg.training.losses.ShardedDiceCELoss`), so the averaged
  gradient is the gradient of the one-process loss.
* Rank 0 validates and writes checkpoints, the bundle and curves; the others wait and receive its
  results (:func:`broadcast_object`). The time cap's stop decision is rank 0's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as tdist

T = TypeVar("T")


@dataclass(frozen=True)
class DistContext:
    """Place of this process in a data-parallel group.

    Attributes:
        rank: global rank, 0 .. world_size - 1 (rank 0 writes every file).
        world_size: number of processes training one model.
        local_rank: rank on this node (selects the GPU ``cuda:<local_rank>``).
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    def __post_init__(self) -> None:
        if self.world_size < 1 or not 0 <= self.rank < self.world_size:
            raise ValueError(f"rank {self.rank} is not in a world of {self.world_size} processes")

    @property
    def active(self) -> bool:
        """True when more than one process trains (collectives run)."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """True on rank 0, the process that validates and writes files."""
        return self.rank == 0

    def device(self, device: torch.device) -> torch.device:
        """This rank's device: ``cuda:<local_rank>`` for a CUDA run, ``device`` otherwise."""
        if self.active and device.type == "cuda":
            return torch.device("cuda", self.local_rank)
        return device


#: The single-process context (no collectives).
SINGLE = DistContext()


def backend_for(device: torch.device) -> str:
    """The ``torch.distributed`` backend for ``device``: NCCL on CUDA, gloo on CPU."""
    return "nccl" if device.type == "cuda" else "gloo"


def barrier(ctx: DistContext) -> None:
    """Wait until every rank reaches this point."""
    if ctx.active:
        tdist.barrier()


def broadcast_object(ctx: DistContext, obj: T) -> T:
    """Rank 0's ``obj`` on every rank (any picklable value; the others pass a placeholder)."""
    if not ctx.active:
        return obj
    box: list[Any] = [obj]
    tdist.broadcast_object_list(box, src=0)
    return box[0]


def mean_over_ranks(ctx: DistContext, value: torch.Tensor) -> torch.Tensor:
    """Mean of ``value`` over the ranks (a detached copy; the tensor itself is left alone)."""
    if not ctx.active:
        return value.detach()
    out = value.detach().clone()
    tdist.all_reduce(out, op=tdist.ReduceOp.SUM)
    return out / ctx.world_size


class _SumOverRanks(torch.autograd.Function):
    """``Σ_ranks x`` in the forward; in the backward each rank's upstream gradient times ``world_size``.

    Every rank computes the same function of the sum, so the sum over ranks of their upstream
    gradients (what the gradient of the global loss w.r.t. this rank's ``x`` is) equals
    ``world_size`` times the local one; no second all-reduce is needed. DDP then averages the
    parameter gradients over the ranks, which divides that factor out again.
    """

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, world_size: int) -> torch.Tensor:
        ctx.world_size = world_size
        out = x.clone()
        tdist.all_reduce(out, op=tdist.ReduceOp.SUM)
        return out

    @staticmethod
    def backward(ctx: Any, *grads: torch.Tensor) -> tuple[torch.Tensor, None]:
        return grads[0] * ctx.world_size, None


def sum_over_ranks(ctx: DistContext, x: torch.Tensor) -> torch.Tensor:
    """``Σ_ranks x`` with gradients such that DDP's averaged gradient is that of the global loss.

    Args:
        ctx: the rank's context (identity for one process).
        x: any float tensor of the same shape on every rank, e.g. per-class Dice sums ``(C,)``.
    """
    if not ctx.active:
        return x
    out: torch.Tensor = _SumOverRanks.apply(x, ctx.world_size)
    return out


def broadcast_flag(ctx: DistContext, flag: bool, device: torch.device) -> bool:
    """Rank 0's ``flag`` on every rank (one-element tensor on ``device``: NCCL needs a CUDA tensor)."""
    if not ctx.active:
        return flag
    box = torch.tensor([1 if flag else 0], dtype=torch.int32, device=device)
    tdist.broadcast(box, src=0)
    return bool(box.item())
