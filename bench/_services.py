"""Standing services for benchmarks: background processes (a Dask cluster, a Prefect server) started
once, as a deployment runs them, and stopped with their whole process group on exit."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

BIN = Path(sys.executable).parent


class Services:
    """Processes spawned in their own sessions, logging to ``logs/<name>``; :meth:`stop` ends them all."""

    def __init__(self, logs: Path, env: dict[str, str], cwd: Path) -> None:
        self.logs, self.env, self.cwd = logs, env, cwd
        self.procs: list[subprocess.Popen[bytes]] = []
        logs.mkdir(parents=True, exist_ok=True)

    def spawn(self, args: list[str], name: str) -> subprocess.Popen[bytes]:
        with open(self.logs / name, "wb") as fh:
            p = subprocess.Popen(args, cwd=self.cwd, env=self.env, stdout=fh, stderr=subprocess.STDOUT,
                                 start_new_session=True)
        self.procs.append(p)
        return p

    def dask(self, work: Path, n_workers: int) -> tuple[str, subprocess.Popen[bytes], list[subprocess.Popen[bytes]]]:
        """A ``dask scheduler`` and ``n_workers`` single-threaded ``dask worker`` processes on 127.0.0.1.

        Returns (scheduler address, scheduler process, worker processes) once every worker is connected.
        """
        sched_file = work / "scheduler.json"
        sched_file.unlink(missing_ok=True)
        scheduler = self.spawn([str(BIN / "dask"), "scheduler", "--host", "127.0.0.1", "--port", "0",
                                "--no-dashboard", "--scheduler-file", str(sched_file)], "scheduler.log")
        deadline = time.monotonic() + 120
        while not sched_file.is_file():
            if time.monotonic() > deadline:
                raise TimeoutError("dask scheduler did not start")
            time.sleep(0.2)
        workers = [
            self.spawn([str(BIN / "dask"), "worker", "--scheduler-file", str(sched_file), "--nthreads", "1",
                        "--no-nanny", "--no-dashboard", "--memory-limit", "2GiB", "--local-directory",
                        str(work / f"w{i}")], f"worker{i}.log")
            for i in range(n_workers)
        ]
        from distributed import Client

        address = str(json.loads(sched_file.read_text())["address"])
        with Client(address, timeout="30s") as c:
            c.wait_for_workers(n_workers, timeout=120)
        return address, scheduler, workers

    def stop(self) -> None:
        for p in reversed(self.procs):
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGTERM)
                except ProcessLookupError:
                    continue
        for p in reversed(self.procs):
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
