"""End to end on real Prefect processes: ``prefect server start`` (127.0.0.1, private PREFECT_HOME),
deploy/setup-prefect.sh (work pool, GPU tag limit, deployments from deploy/prefect.yaml), a
``prefect worker`` of the process pool runs a triggered nightly run to Completed, and the
deployment shows the next run of its cron schedule (timezone-aware).

The set-up script and the worker run as in the images (deploy/Dockerfile): from a folder holding
only deploy/ (no checkout, no .venv, no PYTHONPATH), with the image's ENV and ``prefect`` found on
PATH; the worker imports the flows by module path from the installed package."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import time
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import yaml
from prefect_services import PREFECT, REPO, image_env, image_layout, prefect_server, wait_for_flow_run

from medseg.config_loader import config_dict, load_config

DEPLOYMENT = "medseg-nightly-retrain/nightly-retrain"
TINY = [
    "train.models=[cnn]", "train.max_epochs=1", "train.iterations_per_epoch=2", "train.val_every=1",
    "train.max_minutes=null", "train.filters=[8,16,32,64]", "preprocess.patch_size=[16,64,64]", "infer.overlap=0",
    "infer.sw_batch_size=4", "infer.dicom_seg=false", "split.test_fraction=0.3", "dask.n_workers=1",
]


@pytest.mark.slow
def test_nightly_deployment_runs_on_a_process_worker(tmp_path: Path) -> None:
    from medseg.demo.archive import generate_demo_archive

    archive = tmp_path / "archive"
    generate_demo_archive(archive, cases=3, seed=31)
    cfg = load_config(REPO / "configs" / "demo.yaml", [*TINY, f"workspace={tmp_path / 'ws'}", f"sources=[{archive}]"])
    cfg_file = tmp_path / "site.yaml"
    cfg_file.write_text(yaml.safe_dump(config_dict(cfg, reveal_key=True)))
    plan = yaml.safe_load((REPO / "deploy" / "prefect.yaml").read_text())
    schedule = next(d for d in plan["deployments"] if d["name"] == "nightly-retrain")["schedules"][0]

    opt = image_layout(tmp_path)  # the images' WORKDIR /opt/medseg
    with prefect_server(tmp_path, {"PREFECT_WORKER_QUERY_SECONDS": "1"}) as server:
        env = {k: v for k, v in server.env.items() if k not in ("PYTHONPATH", "PREFECT", "VIRTUAL_ENV")}
        env.update(image_env(), PATH=f"{PREFECT.parent}{os.pathsep}{os.environ['PATH']}")
        setup = subprocess.run(["bash", "deploy/setup-prefect.sh"], cwd=opt, text=True, capture_output=True,
                               timeout=300, env={**env, "MEDSEG_CONFIG": str(cfg_file)})
        assert setup.returncode == 0, setup.stdout[-3000:] + setup.stderr[-3000:]
        assert f"start a worker with: {PREFECT} worker start" in setup.stdout  # found on PATH
        limit = server.api("GET", "/concurrency_limits/tag/gpu")
        assert limit["concurrency_limit"] == 1
        names = {d["name"] for d in server.api("POST", "/deployments/filter", {})}
        assert names == {"nightly-retrain", "bulk-ingest", "batch-infer"}
        dep = server.api("GET", f"/deployments/name/{DEPLOYMENT}")
        assert dep["work_pool_name"] == "medseg-process" and dep["parameters"] == {"config_path": str(cfg_file)}
        sched = dep["schedules"][0]["schedule"]
        assert (sched["cron"], sched["timezone"]) == (schedule["cron"], schedule["timezone"])

        assert dep["entrypoint"] == "medseg.flows.nightly:nightly_flow" and not dep["pull_steps"]
        server.spawn(["prefect", "worker", "start", "--pool", "medseg-process", "--limit", "1"], "worker.log", cwd=opt,
                     env=env)
        run = server.api("POST", f"/deployments/{dep['id']}/create_flow_run", {"parameters": {"run_id": "deployed-1"}})
        final = wait_for_flow_run(server, run["id"], timeout=420)
        assert final["state"]["type"] == "COMPLETED", server.log("worker.log")
        summary = json.loads((tmp_path / "ws" / "reports" / "deployed-1" / "operations.json").read_text())
        assert summary["status"] == "retrained"
        assert {r["stage"] for r in summary["stages"]} >= {"ingest", "preprocess", "train-cnn", "infer-cnn"}

        # the scheduler service fills in the upcoming cron runs: the next one is 02:00 in the deployment's zone
        deadline = time.monotonic() + 90
        while True:
            upcoming = server.api("POST", "/flow_runs/filter", {
                "flow_runs": {"deployment_id": {"any_": [dep["id"]]}, "state": {"type": {"any_": ["SCHEDULED"]}}},
                "sort": "EXPECTED_START_TIME_ASC", "limit": 1})
            if upcoming or time.monotonic() > deadline:
                break
            time.sleep(2)
        assert upcoming, ("the deployment has no scheduled next run; the server's scheduler failed? (SQLAlchemy 2.1 "
                          "breaks Prefect 3.8's scheduler: pin sqlalchemy<2.1)\n" + server.log("server.log"))
        nxt = dt.datetime.fromisoformat(upcoming[0]["expected_start_time"]).astimezone(ZoneInfo(schedule["timezone"]))
        assert nxt > dt.datetime.now(dt.UTC)
        assert (nxt.hour, nxt.minute) == (2, 0)
        assert os.path.isdir(tmp_path / "ws" / "models" / "cnn")
