"""Whatever a command-line process starts dies with it, even when it is killed with SIGKILL.

A ``medseg`` command starts processes it does not create itself: Prefect's temporary API server
(a uvicorn subprocess), the LocalCluster's fork server and Dask workers. When the command ends
normally it stops them; when it is killed (``kill -9``, the OOM killer) nothing would, and they
outlive it: the server holding its port and database, workers still writing volume stores.

:func:`start_child_reaper` forks a small watcher. While the command runs, the watcher records its
descendants (``/proc/<pid>/task/*/children``, walked every ``interval`` seconds). Once the command
is gone (its parent pid changes), it sends SIGTERM to every recorded descendant still alive (and to
their own children), waits up to ``grace`` seconds, then sends SIGKILL, and exits. Each process is
identified by pid *and* start time, so a recycled pid is never signalled. The watcher holds no file
descriptor of the command (a reader of the command's output sees its end when the command ends) and
ignores SIGINT (Ctrl-C reaches the whole foreground group; the watcher stays to clean up).

For entry points only (the CLI): a library call must not fork watchers into its host process.
Linux only (``/proc``); elsewhere it does nothing.
"""

from __future__ import annotations

import os
import signal
import sys
import time

POLL_S = 0.2
GRACE_S = 3.0


def _start_time(pid: int) -> int | None:
    """Start time (clock ticks since boot) of ``pid``, or None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read()
    except OSError:
        return None
    fields = stat[stat.rfind(b")") + 2 :].split()
    if fields[0] == b"Z":  # a zombie has exited already
        return None
    return int(fields[19])


def _children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as fh:
                out.extend(int(c) for c in fh.read().split())
    except OSError:
        pass
    return out


def descendants(pid: int) -> dict[int, int]:
    """``{pid: start time}`` of every living descendant of ``pid``."""
    found: dict[int, int] = {}
    todo = _children(pid)
    while todo:
        child = todo.pop()
        started = _start_time(child)
        if child in found or started is None:
            continue
        found[child] = started
        todo.extend(_children(child))
    return found


def _signal_all(known: dict[int, int], sig: int) -> int:
    """Send ``sig`` to each known process that still is what was recorded; return how many got it."""
    sent = 0
    for pid, started in known.items():
        if _start_time(pid) != started:
            continue
        try:
            os.kill(pid, sig)
            sent += 1
        except OSError:
            continue
    return sent


def _watch(parent: int, interval: float, grace: float) -> None:
    known: dict[int, int] = {}
    while os.getppid() == parent:
        # the living recorded ones (an orphaned grandchild is no descendant any more) and the current ones
        known = {p: s for p, s in known.items() if _start_time(p) == s} | descendants(parent)
        time.sleep(interval)
    for pid in list(known):  # children they started since the last look
        known.update(descendants(pid))
    known.pop(os.getpid(), None)
    if not _signal_all(known, signal.SIGTERM):
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(_start_time(p) == s for p, s in known.items()):
        time.sleep(0.05)
    _signal_all(known, signal.SIGKILL)


def start_child_reaper(interval: float = POLL_S, grace: float = GRACE_S) -> int | None:
    """Fork the watcher of this process's descendants (see module doc); returns its pid.

    Call it early, before the process starts threads or children.
    """
    if not sys.platform.startswith("linux") or not os.path.isdir("/proc/self/task"):
        return None
    parent = os.getpid()
    pid = os.fork()
    if pid:
        return pid
    try:  # the watcher: no Python shutdown (atexit handlers, buffers) of the forked command
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        devnull = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(devnull, fd)
        os.closerange(3, 65536)
        _watch(parent, interval, grace)
    finally:
        os._exit(0)
