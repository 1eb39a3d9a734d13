"""Which samples of an epoch a rank of a data-parallel run draws: its slice of every global batch.

:class:`~medseg.training.patches.PatchDataset` makes sample ``i`` of epoch ``e`` from ``(seed, e, i)``
only, and the one-process loader takes the samples in order, ``global_batch`` at a time. Rank ``r`` of
``world`` takes samples ``k*G + r*b .. k*G + r*b + b - 1`` of global batch ``k`` (``G`` = global batch,
``b = G / world``): the ranks' batches of step ``k`` are together exactly the one-process batch ``k``.
"""

from __future__ import annotations

from collections.abc import Iterator

from torch.utils.data import Sampler


class RankSliceSampler(Sampler[int]):
    """Sample indices of one rank (``len`` = ``samples_per_epoch / world``), in step order.

    Args:
        samples_per_epoch: samples of the epoch on all ranks together (a multiple of ``global_batch``).
        global_batch: the batch of one step over all ranks (a multiple of ``world``).
        rank: this rank, ``0 .. world - 1``.
        world: number of ranks.
    """

    def __init__(self, samples_per_epoch: int, global_batch: int, rank: int, world: int) -> None:
        if global_batch % world:
            raise ValueError(
                f"train.batch_size={global_batch} cannot be split over train.processes={world}: the global batch "
                "must be a multiple of the number of processes"
            )
        if samples_per_epoch % global_batch:
            raise ValueError(f"{samples_per_epoch} samples per epoch are not whole batches of {global_batch}")
        if not 0 <= rank < world:
            raise ValueError(f"rank {rank} is not in a world of {world} processes")
        self.samples_per_epoch, self.global_batch, self.rank, self.world = samples_per_epoch, global_batch, rank, world
        self.local_batch = global_batch // world

    def __len__(self) -> int:
        return self.samples_per_epoch // self.world

    def __iter__(self) -> Iterator[int]:
        first = self.rank * self.local_batch
        for start in range(0, self.samples_per_epoch, self.global_batch):
            yield from range(start + first, start + first + self.local_batch)
