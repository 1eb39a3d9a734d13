"""The Dask dashboard of a stage's cluster as a Prefect link artifact, so a run's page links to it live."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from prefect.artifacts import create_link_artifact

from medseg.runtime.cluster_events import ClusterStarted, on_cluster_start
from medseg.tasks.common import in_prefect_run, run_logger
from medseg.tasks.ops import artifact_key


def publish_dashboard_link(stage: str, event: ClusterStarted) -> None:
    """Write ``event``'s dashboard link to the running flow/task (key ``dask-dashboard-<stage>``)."""
    if event.dashboard is None:
        run_logger().info("%s: the Dask cluster serves no dashboard (dask.dashboard_address is null?)", stage)
        return
    if not in_prefect_run():
        return
    where = "LocalCluster" if event.local else f"scheduler {event.scheduler}"
    create_link_artifact(
        link=event.dashboard,
        link_text=f"Dask dashboard: {stage} ({where}, {event.n_workers} workers)",
        key=artifact_key("dask-dashboard", stage),
        description=f"live task stream, progress and worker memory of the {stage} stage's Dask cluster; "
        "it answers while the stage runs",
    )


@contextmanager
def dashboard_artifact(stage: str) -> Iterator[None]:
    """Publish the dashboard link of every Dask cluster ``stage`` starts inside this block."""
    with on_cluster_start(lambda event: publish_dashboard_link(stage, event)):
        yield
