"""medseg.ops.webhook: the failure webhook POST."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import pytest

from medseg.ops.webhook import WebhookError, failure_message, post_json


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    got: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server API
            body = self.rfile.read(int(self.headers["Content-Length"]))
            got.append(json.loads(body))
            self.send_response(500 if self.path == "/broken" else 200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}", got
    server.shutdown()


def test_post_json_delivers_the_failure_message(receiver: tuple[str, list[dict[str, Any]]]) -> None:
    url, got = receiver
    msg = failure_message("medseg-nightly-retrain", "brave-owl", "Failed", "BundleError: model.pt is corrupt",
                          run_id="r1", workspace="/ws")
    assert post_json(url + "/hook", msg) == 200
    assert got[0]["error"] == "BundleError: model.pt is corrupt" and "brave-owl" in got[0]["text"]
    with pytest.raises(WebhookError, match="HTTP 500"):
        post_json(url + "/broken", msg)


def test_unreachable_webhook_names_the_url() -> None:
    with pytest.raises(WebhookError, match=r"127\.0\.0\.1:9/x unreachable"):
        post_json("http://127.0.0.1:9/x", {"text": "t"}, timeout_s=2)
