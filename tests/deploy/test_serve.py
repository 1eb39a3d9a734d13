"""`medseg serve CONFIG` against a real `prefect server start`: the three flows are served, the nightly
one on the config's cron + timezone, and the `gpu` tag concurrency limit exists."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from prefect_services import PREFECT, prefect_server


@pytest.mark.slow
def test_medseg_serve_registers_the_schedules_and_gpu_limit(tmp_path: Path) -> None:
    cfg = tmp_path / "site.yaml"
    cfg.write_text("ops:\n  nightly_cron: '15 3 * * *'\n  timezone: Asia/Tokyo\n")
    with prefect_server(tmp_path) as server:
        proc = server.spawn([str(PREFECT.with_name("medseg")), "serve", str(cfg)], "serve.log")
        deadline = time.monotonic() + 120
        deployments: list[dict] = []
        while len(deployments) < 3:
            assert proc.poll() is None, server.log("serve.log")
            assert time.monotonic() < deadline, server.log("serve.log")
            time.sleep(1)
            deployments = server.api("POST", "/deployments/filter", {})
        schedules = {d["name"]: [(s["schedule"].get("cron"), s["schedule"].get("timezone")) for s in d["schedules"]]
                     for d in deployments}
        assert schedules == {"nightly-retrain": [("15 3 * * *", "Asia/Tokyo")], "bulk-ingest": [], "batch-infer": []}
        assert all(d["parameters"] == {"config_path": str(cfg.resolve())} for d in deployments)
        assert server.api("GET", "/concurrency_limits/tag/gpu")["concurrency_limit"] == 1
        assert "created gpu concurrency limit" in server.log("serve.log")
