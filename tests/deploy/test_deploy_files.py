"""The deploy/ material is consistent: entrypoints are flows accepting the parameters, schedules are
valid cron + IANA zone, compose/k8s files parse with the expected services, README links every file."""

from __future__ import annotations

import inspect
import py_compile
import re
import subprocess
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import yaml
from prefect import Flow
from prefect.flows import load_flow_from_entrypoint
from prefect_services import image_env, image_layout

from medseg.config_loader import load_config

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"


def _prefect_yaml() -> dict:
    return yaml.safe_load((DEPLOY / "prefect.yaml").read_text())


def test_prefect_yaml_entrypoints_are_flows_taking_the_parameters() -> None:
    spec = _prefect_yaml()
    deployments = {d["name"]: d for d in spec["deployments"]}
    assert set(deployments) == {"nightly-retrain", "bulk-ingest", "batch-infer"}
    assert spec["pull"] == []  # module entrypoints: nothing to pull, no working directory to change into
    setup = (DEPLOY / "setup-prefect.sh").read_text()
    for dep in deployments.values():
        module, _ = dep["entrypoint"].split(":")
        assert module.startswith("medseg.flows."), dep["entrypoint"]  # the installed package, not a file path
        flow = load_flow_from_entrypoint(dep["entrypoint"], use_placeholder_flow=False)  # what a worker runs
        assert isinstance(flow, Flow)
        params = inspect.signature(flow.fn).parameters
        assert set(dep["parameters"]) <= set(params), dep["name"]
        assert dep["work_pool"]["name"] == "medseg-process" and "POOL=\"${MEDSEG_POOL:-medseg-process}\"" in setup
        assert (REPO / dep["parameters"]["config_path"]).is_file()


def test_nightly_schedule_is_a_valid_cron_in_a_real_timezone() -> None:
    from prefect.client.schemas.schedules import CronSchedule

    nightly = next(d for d in _prefect_yaml()["deployments"] if d["name"] == "nightly-retrain")
    (schedule,) = nightly["schedules"]
    ZoneInfo(schedule["timezone"])
    CronSchedule(cron=schedule["cron"], timezone=schedule["timezone"])
    site = load_config(DEPLOY / "medseg.yaml")
    assert (site.ops.nightly_cron, site.ops.timezone) == (schedule["cron"], schedule["timezone"])


def test_compose_has_the_full_stack() -> None:
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"postgres", "prefect-server", "worker", "dask-scheduler", "dask-worker", "setup"} <= set(services)
    assert "postgresql+asyncpg://" in services["prefect-server"]["environment"]["PREFECT_API_DATABASE_CONNECTION_URL"]
    assert services["dask-worker"]["deploy"]["replicas"] == 2
    assert "tcp://dask-scheduler:8786" in services["dask-worker"]["command"]
    assert "--pool medseg-process" in services["worker"]["command"]


def test_kubernetes_and_slurm_material_parse() -> None:
    cluster = yaml.safe_load((DEPLOY / "k8s" / "dask-cluster.yaml").read_text())
    assert cluster["kind"] == "DaskCluster" and cluster["spec"]["worker"]["replicas"] >= 1
    values = yaml.safe_load((DEPLOY / "k8s" / "prefect-worker-values.yaml").read_text())
    assert values["worker"]["config"]["type"] == "kubernetes"
    py_compile.compile(str(DEPLOY / "slurm" / "bulk_on_slurm.py"), doraise=True)
    assert "#SBATCH --gres=gpu:1" in (DEPLOY / "slurm" / "medseg-nightly.sbatch").read_text()


def test_slurm_ddp_job_runs_the_rank_entry_point_with_arguments_it_accepts() -> None:
    from medseg.cli.train_rank import parse_args

    path = DEPLOY / "slurm" / "medseg-train-ddp.sbatch"
    subprocess.run(["bash", "-n", str(path)], check=True)
    text = path.read_text().replace("\\\n", " ")
    launch = next(line for line in text.splitlines() if line.startswith("srun ") and "torchrun" in line)
    assert "--nproc-per-node=" in launch and "--max-restarts=" in launch
    assert "TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1" in text
    rank_args = launch.split("-m medseg.cli.train_rank", 1)[1].replace('"$CONFIG"', "site.yaml").replace(
        '"$FAMILY"', "gan").split()
    args = parse_args(rank_args)
    assert args.config == Path("site.yaml") and args.family == "gan" and args.overrides == ["train.device=cuda"]


@pytest.mark.parametrize("name", ["Dockerfile", "Dockerfile.cuda"])
def test_dockerfiles_copy_existing_folders_and_use_the_constraints(name: str) -> None:
    text = (DEPLOY / name).read_text()
    for src in re.findall(r"^COPY (\S+) ", text, flags=re.M):
        assert (REPO / src).exists(), src
    assert "-c constraints.txt" in text and "torch==2.13.0" in text
    # setup.py builds the C header walk; the image build fails if it was not compiled
    assert re.search(r"^COPY .*setup\.py", text, flags=re.M) and "import medseg.io.dicom._walk" in text


def test_readme_links_every_deploy_file() -> None:
    readme = (REPO / "README.md").read_text()
    for rel in ("deploy/prefect.yaml", "deploy/setup-prefect.sh", "deploy/Dockerfile", "deploy/Dockerfile.cuda",
                "deploy/docker-compose.yml", "deploy/k8s/prefect-worker-values.yaml", "deploy/k8s/dask-cluster.yaml",
                "deploy/slurm/bulk_on_slurm.py", "docs/OPERATIONS.md"):
        assert f"]({rel})" in readme, rel
    assert "bash deploy/install.sh && .venv/bin/medseg demo" in readme  # set-up commands unchanged


@pytest.mark.parametrize("name", ["Dockerfile", "Dockerfile.cuda"])
def test_images_install_the_package_not_the_checkout(name: str) -> None:
    text = (DEPLOY / name).read_text()
    assert not re.search(r"pip install[^\n]* -e ", text)  # an editable install hid the missing package data
    assert "rm -rf /src" in text  # no source folder left to shadow the installed package
    assert re.search(r"^WORKDIR /opt/medseg\nCOPY deploy deploy$", text, flags=re.M)


def test_dockerignore_keeps_the_venv_out_and_lets_every_copied_path_in() -> None:
    rules = [line for line in (REPO / ".dockerignore").read_text().splitlines() if line and not line.startswith("#")]
    assert rules[0] == "*"  # an allowlist: a local .venv, workspaces and build outputs stay out
    allowed = {rule[1:] for rule in rules if rule.startswith("!")}
    for name in ("Dockerfile", "Dockerfile.cuda"):
        text = (DEPLOY / name).read_text()
        for line in re.findall(r"^COPY (.+)$", text, flags=re.M):
            for src in line.split()[:-1]:
                assert src in allowed, (name, src)
    assert ".venv" not in allowed and "deploy/site.yaml" in rules


def test_setup_prefect_uses_the_prefect_on_path_as_in_the_images(tmp_path: Path) -> None:
    opt = image_layout(tmp_path)
    bin_dir = tmp_path / "usr-local-bin"  # the image's system Python scripts
    bin_dir.mkdir()
    calls = tmp_path / "calls.txt"
    shim = bin_dir / "prefect"
    shim.write_text(f'#!/bin/sh\necho "$PWD $*" >> {calls}\ncase "$*" in *inspect*) exit 1;; esac\n')
    shim.chmod(0o755)
    config = opt / "deploy" / "medseg.yaml"
    env = {**image_env(), "PATH": f"{bin_dir}:/usr/bin:/bin", "PREFECT_API_URL": "http://prefect-server:4200/api",
           "MEDSEG_CONFIG": str(config), "HOME": str(tmp_path)}
    proc = subprocess.run(["bash", "deploy/setup-prefect.sh"], cwd=opt, env=env, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    lines = calls.read_text().splitlines()
    assert f"{opt} --no-prompt work-pool create medseg-process --type process" in lines
    assert f"{opt} --no-prompt concurrency-limit create gpu 1" in lines
    deploys = [line for line in lines if " deploy " in line]
    assert len(deploys) == 3 and all("--prefect-file deploy/prefect.yaml" in d for d in deploys)
    assert all(d.startswith(f"{opt} ") and f"config_path={config}" in d for d in deploys)
    assert f"start a worker with: {shim} worker start --pool medseg-process" in proc.stdout


def test_setup_prefect_without_any_prefect_says_so(tmp_path: Path) -> None:
    opt = image_layout(tmp_path)
    env = {"PATH": "/usr/bin:/bin", "PREFECT_API_URL": "http://127.0.0.1:4200/api", "HOME": str(tmp_path)}
    proc = subprocess.run(["bash", "deploy/setup-prefect.sh"], cwd=opt, env=env, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 2 and "no prefect program" in proc.stderr and "PREFECT=" in proc.stderr
