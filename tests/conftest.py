"""Shared fixtures: real data location, Prefect test harness (session-scoped, started on demand)."""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
REAL_DATA = (REPO_ROOT.parent / "shared" / "data" / "real").resolve()  # ingest records resolved paths

os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "90")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_UI_ENABLED", "false")


def _register_phantom() -> None:
    """Make ``import phantom_data`` (tests/training/phantom_data.py, the tiny phantom workspace) work everywhere."""
    name = "phantom_data"
    if name in sys.modules:
        return
    path = Path(__file__).resolve().parent / "training" / "phantom_data.py"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)


_register_phantom()


@pytest.fixture(scope="session", autouse=True)
def local_worker_fork_server() -> None:
    """As ``medseg ingest`` does: single-threaded LocalCluster workers are forked from a preloaded
    server started first (:mod:`medseg.cli.fork_server`), whatever test starts the first cluster."""
    from medseg.cli.fork_server import start_fork_server
    from medseg.ingest.workers import INGEST_WORKER_MODULES

    start_fork_server(1, INGEST_WORKER_MODULES)


@pytest.fixture(scope="session")
def real_data() -> Path:
    if not REAL_DATA.is_dir():
        pytest.skip(f"real data folder {REAL_DATA} not found")
    return REAL_DATA


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    """One ephemeral Prefect server (SQLite) for every flow test of the session."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield
