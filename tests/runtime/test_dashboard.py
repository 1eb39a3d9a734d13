"""The Dask dashboard of a stage's cluster: served while the stage runs, linked from the Prefect run."""

from __future__ import annotations

import urllib.request
from pathlib import Path

import pytest

from medseg.config import DaskConfig
from medseg.runtime.cluster import dask_client
from medseg.runtime.cluster_events import ClusterStarted, on_cluster_start

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def _status(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=30) as response:
        return int(response.status), response.read().decode("utf-8", "replace")


def test_a_local_cluster_serves_its_dashboard_and_announces_the_link() -> None:
    seen: list[tuple[ClusterStarted, int, str]] = []

    def fetch(event: ClusterStarted) -> None:
        assert event.dashboard is not None
        seen.append((event, *_status(event.dashboard)))

    with on_cluster_start(fetch), dask_client(DaskConfig(n_workers=1)):
        pass
    (event, code, body), = seen
    assert event.local and event.n_workers == 1 and event.dashboard.endswith("/status")
    assert event.dashboard.startswith("http://127.0.0.1:")  # default: served on this machine only
    # the real dashboard (bokeh), not the "Dask needs bokeh" text Dask serves without it
    assert code == 200 and "<title>Dask Diagnostic UI</title>" in body and "Bokeh" in body


def test_no_dashboard_when_switched_off() -> None:
    seen: list[ClusterStarted] = []
    with on_cluster_start(seen.append), dask_client(DaskConfig(n_workers=1, dashboard_address=None)):
        pass
    assert len(seen) == 1 and seen[0].dashboard is None


def test_a_failing_listener_does_not_fail_the_stage(caplog: pytest.LogCaptureFixture) -> None:
    def broken(_event: ClusterStarted) -> None:
        raise RuntimeError("listener bug")

    with on_cluster_start(broken), dask_client(DaskConfig(n_workers=1, dashboard_address=None)) as client:
        assert client.submit(sum, [1, 2]).result() == 3
    assert "listener bug" in caplog.text


@pytest.mark.slow
def test_the_ingest_task_links_the_dashboard_that_answers_while_it_runs(tmp_path: Path, prefect_harness: None) -> None:
    from prefect import flow
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterKey

    from medseg.config_loader import load_config
    from medseg.demo.archive import generate_demo_archive
    from medseg.tasks.ingest import ingest_task

    archive = tmp_path / "archive"
    generate_demo_archive(archive, cases=2, seed=5)
    cfg = load_config(CONFIGS / "demo.yaml", [f"workspace={tmp_path / 'ws'}", f"sources=[{archive}]"])
    codes: list[int] = []

    @flow(name="dashboard-probe")
    def probe() -> None:
        ingest_task(cfg)

    with on_cluster_start(lambda event: codes.append(_status(str(event.dashboard))[0])):
        state = probe(return_state=True)
    assert state.is_completed() and codes == [200]
    with get_client(sync_client=True) as client:  # this run's (the session's server holds other tests' runs)
        artifacts = client.read_artifacts(artifact_filter=ArtifactFilter(
            key=ArtifactFilterKey(any_=["dask-dashboard-ingest"]),
            flow_run_id=ArtifactFilterFlowRunId(any_=[state.state_details.flow_run_id])))
    assert len(artifacts) == 1 and artifacts[0].type == "markdown"  # Prefect stores a link artifact as markdown
    assert "/status" in str(artifacts[0].data) and "Dask dashboard: ingest" in str(artifacts[0].data)
