"""``on_failure`` / ``on_crashed`` flow hooks: post one JSON message to ``ops.webhook_url``.

The URL comes from the failed run's parameters (``config`` dict or ``config_path`` YAML) or, when
the config could not be read (that may be the failure), from ``$MEDSEG_WEBHOOK_URL``.
"""

from __future__ import annotations

import logging
import os
from typing import Any, cast

from prefect import Flow
from prefect.client.schemas.objects import FlowRun
from prefect.flows import FlowStateHook
from prefect.states import State

from medseg.config import OpsConfig
from medseg.ops.errors import describe
from medseg.ops.params import resolve_config
from medseg.ops.webhook import WebhookError, failure_message, post_json

log = logging.getLogger("medseg.notify")
ENV_URL = "MEDSEG_WEBHOOK_URL"


def webhook_settings(parameters: dict[str, Any]) -> tuple[str | None, float, str]:
    """``(url, timeout_s, workspace)`` for a run with these flow parameters."""
    config = parameters.get("config")
    if isinstance(config, dict) and parameters.get("config_path") is None:
        # the stored dump of a config object: key and sources redacted, so read only what is needed here
        try:
            ops = OpsConfig.model_validate(config.get("ops") or {})
        except Exception:  # noqa: BLE001 - a bad config is itself a reason to notify
            return os.environ.get(ENV_URL), 10.0, str(config.get("workspace") or "")
        return ops.webhook_url or os.environ.get(ENV_URL), ops.webhook_timeout_s, str(config.get("workspace") or "")
    try:
        cfg = resolve_config(config, parameters.get("config_path"), parameters.get("overrides"))
    except Exception:  # noqa: BLE001 - a bad config is itself a reason to notify
        return os.environ.get(ENV_URL), 10.0, ""
    return cfg.ops.webhook_url or os.environ.get(ENV_URL), cfg.ops.webhook_timeout_s, str(cfg.workspace)


def _error_text(state: State[Any]) -> str:
    try:
        exc = state.result(raise_on_failure=False)
    except Exception as err:  # noqa: BLE001
        exc = err
    if isinstance(exc, BaseException):
        return describe(exc)
    return (state.message or state.name or "failed").strip()


def _ui_url(flow_run: FlowRun) -> str | None:
    try:
        from prefect.settings import PREFECT_UI_URL

        base = PREFECT_UI_URL.value()
    except Exception:  # noqa: BLE001
        return None
    return f"{base}/runs/flow-run/{flow_run.id}" if base else None


def notify_failure(flow: Flow[Any, Any], flow_run: FlowRun, state: State[Any]) -> None:
    """Post the failure to the configured webhook; never raises (a hook must not mask the failure)."""
    url, timeout_s, workspace = webhook_settings(dict(flow_run.parameters or {}))
    if not url:
        log.info("flow run %s failed; no ops.webhook_url configured, nobody notified", flow_run.name)
        return
    payload = failure_message(flow.name, flow_run.name, state.name or "Failed", _error_text(state),
                              run_id=str(flow_run.id), ui_url=_ui_url(flow_run), workspace=workspace)
    try:
        post_json(url, payload, timeout_s)
        log.info("failure of %s posted to %s", flow_run.name, url)
    except WebhookError as exc:
        log.error("could not notify: %s", exc)


#: ``on_failure`` / ``on_crashed`` hooks of every medseg flow
FAILURE_HOOKS: list[FlowStateHook[..., Any]] = [cast("FlowStateHook[..., Any]", notify_failure)]
