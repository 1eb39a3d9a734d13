"""POST a JSON message to a configured webhook (Slack/Teams/Mattermost incoming hooks, any HTTP receiver)."""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request
from typing import Any

log = logging.getLogger(__name__)


class WebhookError(RuntimeError):
    """The webhook could not be reached or answered with an error status."""


def failure_message(flow_name: str, run_name: str, state: str, error: str, run_id: str = "",
                    ui_url: str | None = None, workspace: str = "") -> dict[str, Any]:
    """The JSON body posted on a failed run (``text`` makes it render in Slack/Mattermost as is)."""
    text = f"medseg: flow run {run_name!r} ({flow_name}) {state.lower()}: {error}"
    if ui_url:
        text += f" <{ui_url}>"
    return {
        "text": text,
        "flow": flow_name,
        "flow_run": run_name,
        "flow_run_id": run_id,
        "state": state,
        "error": error,
        "workspace": workspace,
        "url": ui_url,
    }


def post_json(url: str, payload: dict[str, Any], timeout_s: float = 10.0) -> int:
    """POST ``payload`` as JSON to ``url``; return the HTTP status.

    Raises:
        WebhookError: connection failure, timeout or a status >= 400 (message names the URL).
    """
    data = json.dumps(payload, default=str).encode()
    req = urllib.request.Request(url, data=data, method="POST", headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as resp:  # noqa: S310 - configured URL
            status = int(resp.status)
    except urllib.error.HTTPError as exc:
        raise WebhookError(f"webhook {url} answered HTTP {exc.code}: check ops.webhook_url") from exc
    except (urllib.error.URLError, OSError) as exc:
        raise WebhookError(f"webhook {url} unreachable ({exc}): check ops.webhook_url and the network") from exc
    if status >= 400:
        raise WebhookError(f"webhook {url} answered HTTP {status}: check ops.webhook_url")
    return status
