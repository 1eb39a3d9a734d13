"""Who hears that a stage's Dask cluster is up: the dashboard link for logs, Prefect artifacts and users.

:func:`medseg.runtime.cluster.dask_client` calls :func:`announce` once its client is connected; callers that
want to know (a Prefect task publishing the dashboard link, a test fetching the status page) wrap the stage in
:func:`on_cluster_start`. Listeners are scoped to the calling context (a ``ContextVar``), so concurrent
stages in other threads or tasks do not hear each other's clusters.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ClusterStarted:
    """A cluster a stage is about to use.

    Attributes:
        scheduler: the scheduler's address (``tcp://host:port``).
        dashboard: the dashboard's status page (``http://host:port/status``); None when it serves none.
        local: a LocalCluster medseg started (False: an existing scheduler given by ``dask.address``).
        n_workers: workers requested (LocalCluster) or connected (existing scheduler).
    """

    scheduler: str
    dashboard: str | None
    local: bool
    n_workers: int


Listener = Callable[[ClusterStarted], None]
_LISTENERS: ContextVar[tuple[Listener, ...]] = ContextVar("medseg_cluster_listeners", default=())


@contextmanager
def on_cluster_start(listener: Listener) -> Iterator[None]:
    """Call ``listener`` for every cluster a stage run inside this block starts or connects to."""
    token = _LISTENERS.set((*_LISTENERS.get(), listener))
    try:
        yield
    finally:
        _LISTENERS.reset(token)


def announce(event: ClusterStarted) -> None:
    """Log the cluster and its dashboard, then tell the listeners (a failing listener only logs a warning)."""
    what = f"started LocalCluster with {event.n_workers} workers" if event.local else (
        f"connected to Dask scheduler {event.scheduler}")
    log.info("%s (dashboard: %s)", what, event.dashboard or "none")
    for listener in _LISTENERS.get():
        try:
            listener(event)
        except Exception as exc:  # noqa: BLE001 - monitoring must never fail the stage
            log.warning("cluster listener %r failed: %s", listener, exc)
