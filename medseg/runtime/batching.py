"""Dask task maps with a bounded number of tasks in flight, over lazy iterables.

Memory stays flat whatever the number of items: arguments are drawn from the iterable only as
earlier tasks finish, and results are handed on as they come.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

import distributed

from medseg.runtime.cluster import expected_workers


def batched(
    items: Iterable[Any], size: int | Callable[[int], int], weight: Callable[[Any], int] = lambda item: 1
) -> Iterator[list[Any]]:
    """Consecutive lists of items, each closed once its items' ``weight`` reaches ``size``.

    ``size`` may be a function of the weight batched so far (see :class:`medseg.runtime.cluster.TaskSizer`);
    it is asked again after each batch it closed.
    """
    size_of = size if callable(size) else (lambda done: size)
    batch: list[Any] = []
    weighed = done = 0
    target = size_of(0)
    for item in items:
        batch.append(item)
        weighed += weight(item)
        if weighed >= target:
            yield batch
            done += weighed
            batch, weighed = [], 0
            target = size_of(done)
    if batch:
        yield batch


def in_flight_limit(client: distributed.Client) -> int:
    """Tasks a bounded map keeps in flight: four per worker (at least four)."""
    return max(4, 4 * expected_workers(client))


def bounded_map(
    client: distributed.Client, fn: Callable[..., Any], args: Iterable[Any], **kwargs: Any
) -> Iterator[Any]:
    """``client.map`` over a lazy iterable, keeping a bounded number of tasks in flight; yields results as done."""
    limit = in_flight_limit(client)
    it = iter(args)
    pending = distributed.as_completed()
    n = 0
    for arg in it:
        pending.add(client.submit(fn, arg, pure=False, **kwargs))
        n += 1
        if n >= limit:
            break
    for fut in pending:
        result = fut.result()
        fut.release()
        nxt = next(it, _END)
        if nxt is not _END:
            pending.add(client.submit(fn, nxt, pure=False, **kwargs))
        yield result


_END = object()


def ordered_bounded_map(
    client: distributed.Client, fn: Callable[..., Any], args: Iterable[Any], **kwargs: Any
) -> Iterator[Any]:
    """``client.map`` over a lazy iterable, a bounded number of tasks in flight; yields the results in
    the order of ``args`` (what the caller stores does not depend on which worker was faster)."""
    limit = in_flight_limit(client)
    pending = distributed.as_completed()
    seq_of: dict[Any, int] = {}  # future key -> its argument's number
    done: dict[int, Any] = {}
    next_seq = submitted = 0

    def settle(fut: distributed.Future) -> Iterator[Any]:
        nonlocal next_seq
        done[seq_of.pop(fut.key)] = fut.result()
        fut.release()
        while next_seq in done:
            yield done.pop(next_seq)
            next_seq += 1

    for arg in args:
        fut = client.submit(fn, arg, pure=False, **kwargs)
        seq_of[fut.key] = submitted
        submitted += 1
        pending.add(fut)
        while len(seq_of) >= limit:
            yield from settle(next(pending))
    for fut in pending:
        yield from settle(fut)
