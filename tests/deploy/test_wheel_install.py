"""The built wheel works on its own: one top-level package (``medseg``) with its configs as package data,
installed into a fresh venv outside the checkout, runs the CLI from a temporary directory (no checkout
on any path). Slow: builds the wheel and installs every dependency (from pip's cache when warm)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
#: not part of a source tree (a checkout's venv, build outputs, workspaces)
_NOT_SOURCE = shutil.ignore_patterns(".venv", ".git", "build", "dist", "*.egg-info", "__pycache__", "*.so",
                                     ".mypy_cache", ".ruff_cache", ".pytest_cache", "medseg-workspace", "medseg-demo")


def _run(args: list[str | Path], cwd: Path, env: dict[str, str], timeout: float = 900) -> str:
    proc = subprocess.run([str(a) for a in args], cwd=cwd, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(map(str, args))} exited {proc.returncode}:\n{proc.stdout[-4000:]}"
    return proc.stdout


def _clean_env(tmp: Path) -> dict[str, str]:
    """This environment without anything that points into the checkout or its venv."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PREFECT_API_URL") and not k.startswith("PYTEST")}
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if not p.startswith(str(REPO)))
    env.update(PREFECT_HOME=str(tmp / "prefect-home"), PREFECT_SERVER_ANALYTICS_ENABLED="false",
               PREFECT_UI_ENABLED="false", PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="90")
    return env


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel, built (verbosely, to see the build backend's warnings) from a copy of the source tree."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    shutil.copytree(REPO, src, ignore=_NOT_SOURCE)
    out = _run([sys.executable, "-m", "pip", "wheel", "-v", "--no-deps", "-w", tmp / "dist", src], tmp,
               _clean_env(tmp))
    assert "Deprecat" not in out, [line for line in out.splitlines() if "Deprecat" in line][:5]
    (path,) = (tmp / "dist").glob("medseg-*.whl")
    return path


def test_wheel_holds_one_top_level_package_with_its_configs(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    assert {n.split("/")[0] for n in names} == {"medseg", "medseg-0.1.0.dist-info"}
    for sub in ("cli/main.py", "flows/nightly.py", "tasks/ingest.py", "configs/demo.yaml", "configs/default.yaml",
                "py.typed"):
        assert f"medseg/{sub}" in names, sub
    entry_points = zipfile.ZipFile(wheel).read("medseg-0.1.0.dist-info/entry_points.txt").decode()
    assert "medseg = medseg.cli.main:app" in entry_points
    metadata = zipfile.ZipFile(wheel).read("medseg-0.1.0.dist-info/METADATA").decode()
    assert "License-Expression: Apache-2.0" in metadata


@pytest.mark.slow
def test_installed_wheel_runs_outside_the_checkout(wheel: Path, tmp_path: Path) -> None:
    env = _clean_env(tmp_path)
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", venv], tmp_path, env)
    py, medseg = venv / "bin" / "python", venv / "bin" / "medseg"
    # torch first (the CPU wheel), then the wheel with the pins of constraints.txt, as deploy/install.sh does
    _run([py, "-m", "pip", "install", "-q", "torch==2.13.0"], tmp_path, env, timeout=1800)
    _run([py, "-m", "pip", "install", "-q", "-c", REPO / "constraints.txt", wheel], tmp_path, env, timeout=1800)

    work = tmp_path / "elsewhere"
    work.mkdir()
    assert _run([medseg, "--version"], work, env).strip() == "medseg 0.1.0"
    where = _run([py, "-c", "import medseg, medseg.flows.nightly; print(medseg.__file__)"], work, env)
    assert str(venv) in where and str(REPO) not in where
    spec = yaml.safe_load((REPO / "deploy" / "prefect.yaml").read_text())
    entrypoints = [d["entrypoint"] for d in spec["deployments"]]
    loaded = _run([py, "-c", "import sys; from prefect.flows import load_flow_from_entrypoint as load; "
                   "print([load(e, use_placeholder_flow=False).name for e in sys.argv[1:]])", *entrypoints], work, env)
    assert "['medseg-nightly-retrain', 'medseg-bulk-ingest', 'medseg-batch-infer']" in loaded  # what a worker runs
    for name in ("tasks", "flows", "cli"):  # one namespace: the generic names are not installed
        proc = subprocess.run([py, "-c", f"import {name}"], cwd=work, env=env, capture_output=True, text=True)
        assert proc.returncode != 0 and "ModuleNotFoundError" in proc.stderr, name

    # the shipped configs are package data
    (work / "demo.yaml").write_text(_run([medseg, "config", "--example", "demo"], work, env))
    assert "name: demo" in (work / "demo.yaml").read_text()
    assert "workspace: /data/medseg-workspace" in _run([medseg, "config", "--example", "default"], work, env)

    _run([medseg, "demo-data", "archive", "--cases", "3", "--seed", "0"], work, env)
    common = ["--workspace", "ws", "--config", "demo.yaml"]
    ingest = _run([medseg, "ingest", "archive", *common], work, env)
    assert "Traceback" not in ingest
    preprocess = _run([medseg, "preprocess", *common], work, env)
    assert "Traceback" not in preprocess
    ws = work / "ws"
    assert (ws / "catalog.sqlite").is_file() and (ws / "preprocessed" / "plan.json").is_file()
    assert len(list((ws / "volumes").glob("*.zarr"))) == 3
    assert len(list((ws / "preprocessed" / "cases").glob("*.zarr"))) == 3
    status = _run([medseg, "status", "--workspace", "ws"], work, env)
    assert "next: medseg train --model cnn --model gan --workspace ws" in status  # what to run next
