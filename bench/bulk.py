"""Benchmark the bulk archive flow: wall time, Prefect+Dask overhead share and peak RSS per archive size.

Archives: ``medseg.demo.generate_demo_archive`` with about ``size / 35`` cases (a demo case is a
CT series of 24-48 slices + one DICOM SEG), generated once and cached under ``--cache``
(default /tmp/medseg-bench-bulk). The actual file count is reported.

Set-up shared by every run (as in production, nothing is started per run): one
``prefect server start`` on 127.0.0.1 (private PREFECT_HOME) and one Dask cluster (``dask
scheduler`` + ``--workers`` single-threaded ``dask worker`` processes). A warm-up run on a tiny
archive imports everything on the workers first.

Per size, two child processes (measured with :func:`bench._measure.run_measured`):

* ``bulk-flow``: ``flows.bulk.bulk_flow`` (index only, ``assemble=False``) into a fresh workspace:
  scan → manifest → Prefect tasks of ``--files-per-task`` files, each fanning out on the cluster.
* ``plain`` (anchor): the same header reading without Prefect and without batching:
  ``medseg.ingest.file_index.index_files(all files, client)`` on the same cluster, in one call.

Overhead of the flow = (flow wall − medseg work) / flow wall, where the flow wall is measured
inside the flow process from the first line of the flow to its return, and medseg work is the
medseg critical path: scan + max(Σ header-reading CPU on the workers / worker threads,
Σ catalog lookup + commit CPU in the task process, all of that CPU / the machine's cores);
commits of one sub-batch overlap with the reading of the next, and the workers and the task
process share the cores (see :func:`overhead_of`). It counts Prefect (flow/task orchestration,
state and artifact API calls) and Dask (scheduling, transfers, idle workers at batch ends).
RSS: peak of the flow process tree (``rss_tree``); the workers are separate processes, their peak
RSS is sampled at the end. ``service_cpu_s`` (JSON lines) is the CPU each service used during a run.

Usage::

    python bench/bulk.py [--sizes 2000,20000,100000] [--files-per-task N] [--files-per-batch N] [--workers 2]

Ends with ``RESULT overhead=<max over sizes> rss_flat=<max/min flow RSS> ...``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from bench._measure import Measured, run_measured, settle  # noqa: E402
from bench._services import BIN, Services  # noqa: E402

FILES_PER_CASE = 35.0
SECRET = "bench-bulk-secret"


# --- archives -----------------------------------------------------------------------------------


def archive_for(size: int, cache: Path) -> tuple[Path, int]:
    """A cached demo archive of about ``size`` files; returns (folder, number of files)."""
    folder = cache / f"demo-{size}"
    marker = folder / ".nfiles"
    if marker.is_file():
        return folder, int(marker.read_text())
    from medseg.demo.archive import generate_demo_archive

    if folder.exists():
        shutil.rmtree(folder)
    cases = max(3, round(size / FILES_PER_CASE))
    t0 = time.perf_counter()
    print(f"generating {cases} demo cases for ~{size} files in {folder} ...", flush=True)
    generate_demo_archive(folder, cases=cases, seed=7)
    n = sum(len(files) for _, _, files in os.walk(folder))
    marker.write_text(str(n))
    print(f"  {n} files in {time.perf_counter() - t0:.0f}s", flush=True)
    return folder, n


# --- shared services ----------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def services(work: Path, n_workers: int, worker_profile: bool = False) -> Iterator[dict[str, Any]]:
    """A Prefect server and a Dask cluster on 127.0.0.1 for the whole benchmark."""
    port = _free_port()
    env = dict(os.environ)
    env.update(PREFECT_HOME=str(work / "prefect-home"), PREFECT_API_URL=f"http://127.0.0.1:{port}/api",
               PREFECT_SERVER_ANALYTICS_ENABLED="false", PREFECT_UI_ENABLED="false", PYTHONPATH=str(REPO),
               OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1",
               DASK_DISTRIBUTED__WORKER__PROFILE__ENABLED=str(worker_profile))  # off, as deploy/ runs its workers
    svc = Services(work / "logs", env, REPO)
    try:
        server = svc.spawn([str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
                           "prefect.log")
        address, scheduler, workers = svc.dask(work, n_workers)  # starts while the server does
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=2).read()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise TimeoutError("prefect server did not start") from None
                time.sleep(0.5)
        yield {"env": env, "address": address, "workers": workers,
               "cpu_of": {"prefect server": [server], "dask scheduler": [scheduler], "dask workers": workers}}
    finally:
        svc.stop()


# --- children -----------------------------------------------------------------------------------


def _cfg(ws: Path, archive: Path, address: str, args: argparse.Namespace) -> dict[str, Any]:
    from medseg.config import MedsegConfig

    return MedsegConfig.model_validate({
        "workspace": str(ws), "sources": [str(archive)], "dask": {"address": address},
        "ingest": {"deid_secret": SECRET,
                   **({"files_per_batch": args.files_per_batch} if args.files_per_batch else {})},
        "ops": {**({"bulk_tasks_in_flight": args.in_flight} if args.in_flight else {}),
                **({"bulk_files_per_task": args.files_per_task} if args.files_per_task else {})},
    }).model_dump(mode="json")


def child_flow(cfg: dict[str, Any]) -> None:
    from medseg.flows.bulk import bulk_flow

    t0 = time.perf_counter()
    result = bulk_flow(config=cfg, assemble=False)
    result["process_flow_s"] = time.perf_counter() - t0
    result["in_flight"] = cfg["ops"].get("bulk_tasks_in_flight")
    print("BENCHJSON " + json.dumps(result), flush=True)


def child_plain(cfg: dict[str, Any]) -> None:
    from distributed import Client

    from medseg.config import MedsegConfig
    from medseg.ingest.file_index import index_files, scan_sources
    from medseg.workspace import Workspace

    c = MedsegConfig.model_validate(cfg)
    t0 = time.perf_counter()
    items = list(scan_sources(c.sources))
    with Client(c.dask.address, timeout="30s") as client:
        n = index_files(items, Workspace.at(c.workspace).ensure(), c.ingest, client)
    print("BENCHJSON " + json.dumps({"indexed": n, "work_wall_s": time.perf_counter() - t0}), flush=True)


# --- driver -------------------------------------------------------------------------------------


def _service_cpu(svc: dict[str, Any]) -> dict[str, float]:
    """CPU seconds used so far by each service (process and its children)."""
    import psutil

    out: dict[str, float] = {}
    for name, procs in svc["cpu_of"].items():
        total = 0.0
        for p in procs:
            try:
                proc = psutil.Process(p.pid)
                for q in [proc, *proc.children(recursive=True)]:
                    t = q.cpu_times()
                    total += t.user + t.system
            except psutil.Error:
                continue
        out[name] = total
    return out


def _worker_rss_mib(procs: list[subprocess.Popen[bytes]]) -> float:
    import psutil

    peak = 0.0
    for p in procs:
        try:
            info = psutil.Process(p.pid).memory_full_info()
            peak = max(peak, float(getattr(info, "rss", 0)) / 2**20)
        except psutil.Error:
            continue
    return peak


def _run(tool: str, mode: str, cfg: dict[str, Any], env: dict[str, str], timeout: float) -> Measured:
    cmd = [sys.executable, str(Path(__file__).resolve()), f"--child-{mode}", json.dumps(cfg)]
    m = run_measured(tool, cmd, env=env, timeout=timeout, cwd=REPO)
    if not m.ok:
        print(m.log_tail, file=sys.stderr)
        raise SystemExit(f"{tool} failed (rc={m.rc})")
    return m


def overhead_of(info: dict[str, Any], cores: int | None = None) -> dict[str, float]:
    """Medseg critical path and overhead share of a bulk flow result (see the module docstring).

    ``medseg_s`` = scan + the largest of three lower bounds on the batches' wall time, all from CPU
    time (thread CPU clocks, so waiting for a core does not count as work):

    * header reading spread over the worker threads (``read / threads``);
    * the serial chain in the task process (catalog lookups + commits);
    * all of that medseg CPU work spread over the machine's ``cores``, which the workers and the
      task process share here (on 2 cores, 2 busy workers and a committing task process cannot all
      run at full speed).

    ``overhead`` = (flow wall − medseg_s) / flow wall: Prefect and Dask together (orchestration
    API calls, scheduling, transfers, idle workers at batch ends).
    """
    wall = float(info["wall_seconds"])
    threads = max(1, int(info["workers"]))
    cpu = info["cpu_seconds"]
    read, serial = float(cpu["read"]), float(cpu["lookup"]) + float(cpu["commit"])
    cores = cores or os.cpu_count() or 1
    medseg = float(info["scan_seconds"]) + max(read / threads, serial, (read + serial) / cores)
    return {"medseg_s": medseg, "overhead": (wall - medseg) / wall if wall > 0 else math.nan}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="2000,20000,100000", help="comma-separated archive sizes (files)")
    ap.add_argument("--files-per-task", type=int, default=None, help="default: ops.bulk_files_per_task")
    ap.add_argument("--in-flight", type=int, default=None,
                    help="batch tasks running at once (default: ops.bulk_tasks_in_flight)")
    ap.add_argument("--files-per-batch", type=int, default=None,
                    help="files per Dask task inside a batch (default: ingest.files_per_batch)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--worker-profile", action="store_true",
                    help="keep Dask's statistical profiler on in the workers (deploy/ turns it off)")
    ap.add_argument("--cache", type=Path, default=Path("/tmp/medseg-bench-bulk"))
    ap.add_argument("--no-plain", action="store_true", help="skip the anchor (plain index_files) runs")
    ap.add_argument("--timeout", type=float, default=3600)
    ap.add_argument("--child-flow", help=argparse.SUPPRESS)
    ap.add_argument("--child-plain", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child_flow:
        return child_flow(json.loads(args.child_flow))
    if args.child_plain:
        return child_plain(json.loads(args.child_plain))

    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    args.cache.mkdir(parents=True, exist_ok=True)
    archives = {size: archive_for(size, args.cache) for size in sizes}
    warm_archive, _ = archive_for(100, args.cache)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-bulk-") as tmp:
        work = Path(tmp)
        with services(work, args.workers, args.worker_profile) as svc:
            env, address = svc["env"], svc["address"]
            _run("warm-up", "flow", _cfg(work / "ws-warm", warm_archive, address, args),
                 env, args.timeout)
            for size, (archive, n_files) in archives.items():
                cfg = _cfg(work / f"ws-flow-{size}", archive, address, args)
                settle(archive)
                before = _service_cpu(svc)
                m = _run("bulk-flow", "flow", cfg, env, args.timeout)
                after = _service_cpu(svc)
                ov = overhead_of(m.info)
                row = {"files": n_files, "tool": "bulk-flow", "tasks": m.info["n_batches"],
                       "wall_s": m.wall_s, "flow_s": m.info["wall_seconds"], "work_s": ov["medseg_s"],
                       "overhead": ov["overhead"], "rss_tree": m.rss_tree_mib,
                       "rss_max": m.rss_max_mib, "worker_rss": _worker_rss_mib(svc["workers"]),
                       "read_s": m.info["read_seconds"], "commit_s": m.info["commit_seconds"],
                       "lookup_s": m.info["lookup_seconds"], "scan_s": m.info["scan_seconds"],
                       "cpu_s": m.info["cpu_seconds"], "flow_process_cpu_s": m.cpu_s,
                       "service_cpu_s": {k: round(after[k] - before[k], 2) for k in after},
                       "timings": m.info.get("timings")}
                rows.append(row)
                print(json.dumps(row), flush=True)
                if not args.no_plain:
                    cfg = _cfg(work / f"ws-plain-{size}", archive, address, args)
                    settle(archive)
                    p = _run("plain", "plain", cfg, env, args.timeout)
                    prow = {"files": n_files, "tool": "plain index_files", "tasks": 1, "wall_s": p.wall_s,
                            "flow_s": p.info["work_wall_s"], "work_s": math.nan, "overhead": math.nan,
                            "rss_tree": p.rss_tree_mib, "rss_max": p.rss_max_mib,
                            "worker_rss": _worker_rss_mib(svc["workers"])}
                    rows.append(prow)
                    print(json.dumps(prow), flush=True)
                shutil.rmtree(work / f"ws-flow-{size}", ignore_errors=True)
                shutil.rmtree(work / f"ws-plain-{size}", ignore_errors=True)
    _print_table(rows, args)


def _print_table(rows: list[dict[str, Any]], args: argparse.Namespace) -> None:
    print()
    from medseg.config import IngestConfig, OpsConfig

    per_task = args.files_per_task or OpsConfig().bulk_files_per_task
    per_batch = args.files_per_batch or IngestConfig.model_fields["files_per_batch"].default
    print(f"bulk flow (index only), {per_task} files/task, up to {per_batch} files per Dask task, "
          f"{args.in_flight or OpsConfig().bulk_tasks_in_flight} tasks in flight, "
          f"{args.workers} Dask workers x 1 thread; anchor = plain index_files (no Prefect, no batching)")
    header = f"{'files':>8} {'tool':<18} {'tasks':>5} {'wall_s':>8} {'flow_s':>8} {'work_s':>8} {'overhead':>9} " \
             f"{'vs_plain':>8} {'rss_tree':>9} {'rss_max':>8} {'wrk_rss':>8}"
    print(header)
    print("-" * len(header))
    plain = {r["files"]: r for r in rows if r["tool"] != "bulk-flow"}
    for r in rows:
        ov = "-" if math.isnan(r["overhead"]) else f"{100 * r['overhead']:.1f}%"
        base = plain.get(r["files"]) if r["tool"] == "bulk-flow" else None
        pf = f"{r['flow_s'] / base['flow_s']:.2f}x" if base else "-"
        ws = "-" if math.isnan(r["work_s"]) else f"{r['work_s']:.1f}"
        print(f"{r['files']:>8} {r['tool']:<18} {r['tasks']:>5} {r['wall_s']:>8.1f} {r['flow_s']:>8.1f} {ws:>8} "
              f"{ov:>9} {pf:>8} {r['rss_tree']:>9.0f} {r['rss_max']:>8.0f} {r['worker_rss']:>8.0f}")
    flows = [r for r in rows if r["tool"] == "bulk-flow"]
    overhead = max(r["overhead"] for r in flows)
    largest = max(flows, key=lambda r: r["files"])
    rss = [r["rss_tree"] for r in flows]
    vs = [r["flow_s"] / plain[r["files"]]["flow_s"] for r in flows if r["files"] in plain]
    print()
    print("columns: wall_s = child process (imports + flow), flow_s = flow body, work_s = medseg critical path,\n"
          "         overhead = (flow_s - work_s)/flow_s [Prefect+Dask],\n"
          "         vs_plain = flow_s / flow_s of the plain anchor (same cluster, no Prefect, no batches),\n"
          "         rss_tree = peak RSS of the flow process tree (MiB), wrk_rss = largest Dask worker RSS at the end")
    print(f"RESULT overhead={overhead:.3f} overhead_largest={largest['overhead']:.3f} "
          f"rss_flat={max(rss) / min(rss):.2f} "
          f"rss_tree_max_mib={max(rss):.0f} "
          f"sizes={','.join(str(r['files']) for r in flows)}"
          + (f" flow_vs_plain_max={max(vs):.2f}" if vs else ""))


if __name__ == "__main__":
    main()
