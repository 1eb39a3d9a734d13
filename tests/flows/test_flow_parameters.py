"""Every flow takes its config the same way: ``config`` / ``config_path`` / ``overrides`` first."""

from __future__ import annotations

import inspect

import pytest


def _flows() -> list[object]:
    from medseg.flows import bulk, nightly, pipeline, stages

    return [stages.ingest_flow, stages.preprocess_flow, stages.train_flow, stages.infer_flow, stages.report_flow,
            stages.predict_flow,
            pipeline.pipeline_flow, nightly.nightly_flow, nightly.batch_infer_flow, bulk.bulk_flow]


def test_every_flow_takes_config_config_path_and_overrides_first() -> None:
    for flow in _flows():
        params = list(inspect.signature(flow.fn).parameters.values())  # type: ignore[attr-defined]
        assert [p.name for p in params[:3]] == ["config", "config_path", "overrides"], flow
        assert all(p.default is not inspect.Parameter.empty for p in params), flow  # the rest by name


def test_a_flow_without_a_config_fails_with_one_line() -> None:
    from medseg.config_loader import ConfigError
    from medseg.flows.stages import ingest_flow

    with pytest.raises(ConfigError, match="exactly one of the flow parameters"):
        ingest_flow.fn()
