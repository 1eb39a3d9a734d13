"""Run one pure function per item on a Dask client (or sequentially), collecting per-item errors."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from distributed import Client, as_completed

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class Outcome(Generic[T, R]):
    """Result of one item: ``value`` on success, else ``error`` (``"ExcType: message"``)."""

    item: T
    value: R | None
    error: str | None


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def fan_out(
    fn: Callable[..., R],
    items: Sequence[T],
    client: Client | None,
    progress: Callable[[int, int], None] | None = None,
    retries: int = 2,
    on_outcome: Callable[[Outcome[T, R], int, int], None] | None = None,
    resources: Mapping[str, float] | None = None,
    **kwargs: Any,
) -> list[Outcome[T, R]]:
    """Apply ``fn(item, **kwargs)`` to every item; one failing item never stops the others.

    With a client the calls are submitted with ``client.map(..., pure=True, retries=retries)`` (so
    ``fn`` and ``kwargs`` must be picklable and ``fn`` importable on the workers), each asking for
    the worker ``resources`` when given (e.g. ``{"GPU": 1}``); without a client they run in this
    process. A worker that dies mid-task is not a retry: the scheduler runs its tasks elsewhere.
    ``progress(done, total)`` is called after each item, and ``on_outcome(outcome, done, total)``
    (if given) with that item's outcome, in completion order.

    Returns:
        One :class:`Outcome` per item, in the order of ``items``.
    """
    total = len(items)
    outcomes: dict[int, Outcome[T, R]] = {}
    if client is None:
        for i, item in enumerate(items):
            try:
                outcomes[i] = Outcome(item, fn(item, **kwargs), None)
            except Exception as exc:  # noqa: BLE001 - reported per item
                outcomes[i] = Outcome(item, None, _describe(exc))
            if on_outcome is not None:
                on_outcome(outcomes[i], i + 1, total)
            if progress is not None:
                progress(i + 1, total)
        return [outcomes[i] for i in range(total)]
    if total == 0:
        return []
    futures = client.map(fn, list(items), pure=True, retries=retries,
                         resources=dict(resources) if resources else None, **kwargs)
    index = {f.key: i for i, f in enumerate(futures)}
    for done, future in enumerate(as_completed(futures), start=1):
        i = index[future.key]
        try:
            outcomes[i] = Outcome(items[i], future.result(), None)
        except Exception as exc:  # noqa: BLE001 - reported per item
            outcomes[i] = Outcome(items[i], None, _describe(exc))
        finally:
            future.release()
        if on_outcome is not None:
            on_outcome(outcomes[i], done, total)
        if progress is not None:
            progress(done, total)
    return [outcomes[i] for i in range(total)]
