"""medseg.cli.fork_server: an entry point starts the workers' fork server first thing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from medseg.runtime.fork_server import fork_server_available

REPO_ROOT = Path(__file__).resolve().parents[2]


_SCRIPT = """
from medseg.cli.fork_server import start_fork_server
start_fork_server()  # module level: forked workers run this script again as __mp_main__
from medseg.config import DaskConfig
from medseg.runtime.cluster import dask_client

if __name__ == "__main__":
    with dask_client(DaskConfig(n_workers=1, threads_per_worker=1, memory_limit="1GiB")) as client:
        print("sum", client.submit(sum, [1, 2, 3]).result())
"""


@pytest.mark.skipif(not fork_server_available(), reason="no forkserver start method on this platform")
def test_a_script_may_start_the_fork_server_before_its_main_guard(tmp_path: Path) -> None:
    script = tmp_path / "ingest_script.py"
    script.write_text(_SCRIPT)
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=90,
                          cwd=REPO_ROOT, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["sum", "6"]
