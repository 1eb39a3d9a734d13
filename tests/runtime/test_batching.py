"""medseg.runtime.batching: lazy batches and bounded Dask maps (in order, or as completed)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import distributed
import pytest

from medseg.runtime.batching import batched, bounded_map, in_flight_limit, ordered_bounded_map


def test_batches_close_once_their_weight_reaches_the_size() -> None:
    assert list(batched(range(7), 3)) == [[0, 1, 2], [3, 4, 5], [6]]
    assert list(batched([2, 3, 1, 1, 4], 4, weight=lambda n: n)) == [[2, 3], [1, 1, 4]]
    asked: list[int] = []

    def size(done: int) -> int:
        asked.append(done)
        return 2

    assert list(batched(range(5), size)) == [[0, 1], [2, 3], [4]] and asked == [0, 2, 4]


def _slow_square(x: int) -> int:
    time.sleep(0.05 if x == 0 else 0.0)  # the first task finishes last
    return x * x


@pytest.fixture(scope="module")
def client() -> Iterator[distributed.Client]:
    with distributed.Client(n_workers=1, threads_per_worker=4, processes=False, dashboard_address=None) as c:
        yield c


def test_a_bounded_map_draws_its_arguments_lazily(client: distributed.Client) -> None:
    drawn: list[int] = []

    def args() -> Iterator[int]:
        for i in range(20):
            drawn.append(i)
            yield i

    results = bounded_map(client, _slow_square, args())
    first = next(results)
    assert len(drawn) <= in_flight_limit(client) + 1  # not all submitted at once
    assert sorted([first, *results]) == [i * i for i in range(20)]


def test_an_ordered_bounded_map_yields_in_argument_order(client: distributed.Client) -> None:
    assert list(ordered_bounded_map(client, _slow_square, iter(range(10)))) == [i * i for i in range(10)]
