"""Table artifacts: published inside a flow run; outside one (task.fn(), scripts) nothing is attempted."""

from __future__ import annotations

import pytest

from medseg.tasks import ops


def test_outside_a_run_nothing_is_published(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    monkeypatch.setattr(ops, "create_table_artifact", lambda **kw: calls.append(kw["key"]))
    ops.publish_table("medseg-qa", [{"case": "c1"}], "qa")
    assert calls == []  # creating it would start Prefect's temporary server (~20 s) for nothing


def test_inside_a_flow_the_table_and_its_summary_are_published(prefect_harness: None) -> None:
    from prefect import flow
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    @flow(name="publish-probe")
    def probe() -> None:
        ops.publish_table("medseg-probe", [{"case": "c1", "flagged": True}], "probe", markdown="# probe")

    state = probe(return_state=True)
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(artifact_filter=ArtifactFilter(
            flow_run_id=ArtifactFilterFlowRunId(any_=[state.state_details.flow_run_id])))
    assert sorted((a.key, a.type) for a in artifacts) == [("medseg-probe", "table"),
                                                          ("medseg-probe-summary", "markdown")]
