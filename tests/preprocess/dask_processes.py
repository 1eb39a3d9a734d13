"""A real Dask cluster for tests: ``dask scheduler`` + ``dask worker`` processes on 127.0.0.1.

The processes run the project venv's ``dask`` script with the repository root as working
directory and on ``PYTHONPATH``, so workers import the same ``medseg`` as the test.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from distributed import Client

REPO_ROOT = Path(__file__).resolve().parents[2]
DASK = Path(sys.executable).with_name("dask")


@dataclass
class ProcessCluster:
    """Handles of the started processes."""

    address: str
    scheduler_file: Path
    scheduler: subprocess.Popen[bytes]
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def worker_address(self, client: Client, proc: subprocess.Popen[bytes]) -> str:
        """Scheduler address of the worker whose process is ``proc`` (``--no-nanny``: pid = worker)."""
        for addr, pid in client.run(os.getpid).items():
            if pid == proc.pid:
                return str(addr)
        raise LookupError(f"worker process {proc.pid} is not registered with {self.address}")


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.update(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    return env


def _wait_for(predicate: object, what: str, timeout: float, procs: list[subprocess.Popen[bytes]]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(predicate) and predicate():
            return
        dead = [p.args for p in procs if p.poll() is not None]
        if dead:
            raise RuntimeError(f"dask process exited while waiting for {what}: {dead}")
        time.sleep(0.1)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")


@contextmanager
def process_cluster(tmp: Path, n_workers: int = 2, timeout: float = 60.0) -> Iterator[ProcessCluster]:
    """Start a scheduler and ``n_workers`` single-threaded workers (no nanny); stop them on exit."""
    tmp.mkdir(parents=True, exist_ok=True)
    sched_file = tmp / "scheduler.json"
    log_dir = tmp / "logs"
    log_dir.mkdir(exist_ok=True)
    env = _env()
    procs: list[subprocess.Popen[bytes]] = []

    def _spawn(args: list[str], log_name: str) -> subprocess.Popen[bytes]:
        with open(log_dir / log_name, "wb") as fh:
            proc = subprocess.Popen(args, cwd=REPO_ROOT, env=env, stdout=fh, stderr=subprocess.STDOUT)
        procs.append(proc)
        return proc

    try:
        sched = _spawn(
            [str(DASK), "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
             "--scheduler-file", str(sched_file)],
            "scheduler.log",
        )
        _wait_for(sched_file.is_file, "the scheduler file", timeout, procs)
        address = str(json.loads(sched_file.read_text())["address"])
        workers = [
            _spawn(
                [str(DASK), "worker", "--scheduler-file", str(sched_file), "--nthreads", "1", "--no-nanny",
                 "--no-dashboard", "--memory-limit", "2GiB", "--local-directory", str(tmp / f"w{i}"),
                 "--name", f"w{i}"],
                f"worker{i}.log",
            )
            for i in range(n_workers)
        ]
        with Client(address, timeout="30s") as probe:
            probe.wait_for_workers(n_workers, timeout=timeout)
        yield ProcessCluster(address, sched_file, sched, workers)
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in reversed(procs):
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
