"""Shared by the benchmark scripts: run a command and measure wall time and peak RSS of its process tree.

A tool under test runs as a subprocess; psutil samples the RSS of the process and all its children
every 50 ms; ``cpu_s`` is the CPU time of the tree (from the reaped children's rusage), a
load-independent figure next to the wall time. On Linux this process is the tree's subreaper, so
processes the tool leaves behind (e.g. a fork server, which exits right after the tool and has
reaped the workers forked from it) are reaped here and count too. ``rss_tree_mib`` is the peak
of the sum over the tree (what the machine must hold), ``rss_max_mib`` the peak of the largest
single process. The child reports what it produced by printing one line ``BENCHJSON {...}`` (or
a bare JSON object line) on stdout; it lands in ``info``.
"""

from __future__ import annotations

import ctypes
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil


@dataclass
class Measured:
    """Wall time, peak memory and reported info of one measured command."""

    tool: str
    wall_s: float
    rss_tree_mib: float
    rss_max_mib: float
    rc: int
    info: dict[str, Any] = field(default_factory=dict)
    log_tail: str = ""
    cpu_s: float = 0.0  # user + system CPU seconds of the whole process tree (independent of machine load)

    @property
    def ok(self) -> bool:
        return self.rc == 0


def _parse_info(text: str) -> dict[str, Any]:
    for line in reversed(text.splitlines()):
        line = line.strip()
        if line.startswith("BENCHJSON "):
            return dict(json.loads(line[len("BENCHJSON ") :]))
        if line.startswith("{") and line.endswith("}"):
            try:
                return dict(json.loads(line))
            except json.JSONDecodeError:
                continue
    return {}


_PR_SET_CHILD_SUBREAPER = 36


def _become_subreaper() -> bool:
    """Orphaned descendants are re-parented to this process (Linux), which can then reap them."""
    if not sys.platform.startswith("linux"):
        return False
    return ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0


def _reap(pids: set[int], timeout: float = 30.0) -> None:
    """Wait for the descendants left behind by the tool (now our children), so their CPU time counts."""
    deadline = time.perf_counter() + timeout
    pending = set(pids)
    while pending and time.perf_counter() < deadline:
        for pid in list(pending):
            try:
                done, _ = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:  # not ours (reaped by its own parent, or gone)
                pending.discard(pid)
                continue
            if done:
                pending.discard(pid)
        if pending:
            time.sleep(0.01)


def run_measured(tool: str, cmd: list[str], env: dict[str, str] | None = None, timeout: float = 3600.0,
                 cwd: Path | None = None) -> Measured:
    """Run ``cmd``; return wall time and peak RSS (tree sum and largest process), sampled every 50 ms.

    A run longer than ``timeout`` seconds is killed (with its children) and reported with ``rc=-9``.
    stdout and stderr go to a temporary file (a pipe could fill up and block the child).
    """
    subreaper = _become_subreaper()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    out = tempfile.TemporaryFile("w+")
    proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, text=True, cwd=cwd)
    ps = psutil.Process(proc.pid)
    tree_peak = max_peak = 0
    seen: set[int] = set()
    killed = False
    while proc.poll() is None:
        if time.perf_counter() - t0 > timeout:
            for child in ps.children(recursive=True):
                child.kill()
            proc.kill()
            killed = True
            break
        try:
            rss = []
            children = ps.children(recursive=True)
            seen.update(c.pid for c in children)
            for p in [ps, *children]:
                try:
                    rss.append(p.memory_info().rss)
                except psutil.Error:
                    pass
            tree_peak = max(tree_peak, sum(rss))
            max_peak = max(max_peak, max(rss, default=0))
        except psutil.Error:
            pass
        try:  # the next sample in 50 ms; the wall time stops when the tool exits, not at the next sample
            proc.wait(timeout=0.05)
        except subprocess.TimeoutExpired:
            pass
    proc.wait()
    wall = time.perf_counter() - t0
    if subreaper:
        _reap(seen)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    out.seek(0)
    text = out.read()
    out.close()
    rc = -9 if killed else proc.returncode
    return Measured(tool, wall, tree_peak / 2**20, max_peak / 2**20, rc, _parse_info(text), text[-3000:], cpu)


_DROP_CACHES = Path("/proc/sys/vm/drop_caches")


def _drop_page_cache() -> bool:
    """Drop the clean page cache (root on Linux; False elsewhere): the earlier tools' outputs leave it."""
    try:
        _DROP_CACHES.write_text("1")
    except OSError:
        return False
    return True


def settle(folder: Path) -> None:
    """Start a measured run from the same state as the others: every file under ``folder`` in the
    page cache (the kernel may have dropped part of it since the last run, which would then pay for
    the disk reads), no writeback of earlier outputs pending and, where this process may (root on
    Linux), none of the earlier runs' outputs in the page cache: with GBs of them cached, medseg ran
    up to 1 s (25 %) slower right after the SimpleITK loop than first in a round."""
    os.sync()
    _drop_page_cache()
    for parent, _, files in os.walk(folder):
        for name in files:
            with open(os.path.join(parent, name), "rb") as fh:
                while fh.read(1 << 20):
                    pass
    os.sync()
