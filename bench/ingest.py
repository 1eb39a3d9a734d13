"""Benchmark medseg ingest against dcm2niix, dicom2nifti and a SimpleITK series loop on one archive.

The archive is the synthetic demo archive (CT series + DICOM SEG, compressed/uncompressed encodings)
scaled to ``--files`` files, plus the real vendor series of ``../shared/data/real/dicom2nifti``.
Every tool runs as a child process on the same warm-cache archive, with its own program warm too
(see :func:`warm_program`; ``--cold-programs`` leaves them to be read from disk during the run
instead); the bench measures wall time
(process start to exit, so imports, Dask cluster start-up and output writing count), files/s and
peak RSS (psutil polling every 50 ms: the sum over the process tree and the largest process).

Tool settings (each the fastest sensible configuration of that tool):

* medseg: ``medseg.ingest.run.ingest`` on a LocalCluster of ``--workers`` processes, 1 thread each
  (header index, stack validation, SEG labels, catalog, Blosc-LZ4 Zarr stores), started by the run
  as ``medseg ingest`` does by default (the workers' fork server first thing, see
  ``medseg.cli.fork_server``): the ``ratio`` of the RESULT line;
* medseg-cluster: the same ingest on a standing Dask cluster (``dask.address``: a ``dask scheduler``
  + ``--workers`` single-threaded ``dask worker`` processes started once by the bench and warmed by
  one ingest of the small archive, as a deployment's workers are): no worker start-up in the run;
* dcm2niix: ``-z n -b n`` (uncompressed NIfTI, no BIDS sidecar);
* dicom2nifti: ``convert_directory(compression=False, reorient=False)`` once per patient folder
  (one call on the whole archive keeps every dataset, pixels included, in memory and runs
  ``gc.collect()`` after each series, which is superlinear: > 17 min for 20k files);
* SimpleITK: for every folder, ``GetGDCMSeriesIDs`` -> ``GetGDCMSeriesFileNames`` ->
  ``ImageSeriesReader.Execute`` -> ``WriteImage(.nii)``.

A second, smaller archive (``--small-files``) is ingested by medseg alone to show that its peak
RSS does not grow with the archive size.

Usage::

    python bench/ingest.py [--files 20000] [--small-files 4000] [--workdir DIR] [--tools medseg,sitk,...] [--repeat 3]

Each tool runs ``--repeat`` times, interleaved (medseg, dcm2niix, ..., medseg, dcm2niix, ...), and
the table shows each tool's median run: this VM's speed drifts by +-20 % within minutes.

Ends with ``RESULT medseg_s=... dcm2niix_s=... dicom2nifti_s=... sitk_s=... ratio=...`` where
``ratio`` = medseg wall / fastest anchor wall.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from bench._measure import run_measured, settle  # noqa: E402
from bench._services import Services  # noqa: E402
from medseg.config import IngestConfig  # noqa: E402
from medseg.ingest.workers import INGEST_WORKER_MODULES  # noqa: E402
from medseg.runtime.fork_server import DASK_WORKER_MODULES  # noqa: E402

REAL_D2N = REPO.parent / "shared" / "data" / "real" / "dicom2nifti"
FILES_PER_CASE = 36.0  # demo archive: 24-48 slices + 1 SEG per case
TOOLS = ("medseg", "medseg-cluster", "dcm2niix", "dicom2nifti", "sitk")

_MEDSEG = """
import sys, json
if sys.argv[3].isdigit() and int(sys.argv[3]) > 0:  # a LocalCluster: its workers' fork server starts
    from medseg.cli.fork_server import start_fork_server  # first thing, as in `medseg ingest`
    from medseg.ingest.workers import INGEST_WORKER_MODULES
    start_fork_server(1, INGEST_WORKER_MODULES)
from medseg.cli.fast_exit import skip_final_gc
skip_final_gc()  # as every `medseg` command does
from pathlib import Path
from medseg.config import DaskConfig, IngestConfig
from medseg.ingest.run import ingest
from medseg.ingest.workers import INGEST_WORKER_MODULES
from medseg.runtime.cluster import dask_client
from medseg.workspace import Workspace

def main():
    src, ws, workers = Path(sys.argv[1]), Workspace.at(sys.argv[2]), sys.argv[3]
    cfg = IngestConfig(files_per_batch=int(sys.argv[4]))
    if workers.startswith("tcp://"):  # a standing cluster
        with dask_client(DaskConfig(address=workers), preload=INGEST_WORKER_MODULES) as client:
            s = ingest([src], ws, cfg, client=client)
    elif int(workers) > 0:
        dask_cfg = DaskConfig(n_workers=int(workers), threads_per_worker=1, memory_limit="3GiB")
        # as medseg.stages.ingest does
        with dask_client(dask_cfg, preload=INGEST_WORKER_MODULES, workers_in_background=True) as client:
            s = ingest([src], ws, cfg, client=client)
    else:
        s = ingest([src], ws, cfg)
    print(json.dumps({"outputs": s.cases, "labeled": s.labeled_cases, "quarantined": s.quarantined}))

if __name__ == "__main__":
    main()
"""

_DICOM2NIFTI = """
import sys, json, logging, os
from pathlib import Path
import dicom2nifti
logging.disable(logging.CRITICAL)
src, out = Path(sys.argv[1]), Path(sys.argv[2])
folders = sorted(p for part in src.iterdir() if part.is_dir() for p in part.iterdir() if p.is_dir())
for i, folder in enumerate(folders):
    dest = out / f"{i:05d}"
    dest.mkdir()
    dicom2nifti.convert_directory(str(folder), str(dest), compression=False, reorient=False)
print(json.dumps({"outputs": sum(1 for _ in out.rglob("*.nii")), "calls": len(folders)}))
"""

_SITK = """
import os, sys, json
import SimpleITK as sitk
sitk.ProcessObject.SetGlobalWarningDisplay(False)
src, out = sys.argv[1], sys.argv[2]
n = failed = 0
for folder, _, files in sorted(os.walk(src)):
    if not files:
        continue
    for sid in sitk.ImageSeriesReader.GetGDCMSeriesIDs(folder):
        reader = sitk.ImageSeriesReader()
        reader.SetFileNames(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(folder, sid))
        try:
            image = reader.Execute()
            sitk.WriteImage(image, os.path.join(out, f"{n:06d}.nii"))
            n += 1
        except RuntimeError:
            failed += 1
print(json.dumps({"outputs": n, "failed": failed}))
"""


@dataclass
class Result:
    tool: str
    files: int
    wall_s: float
    rss_tree_mib: float
    rss_max_mib: float
    outputs: str
    rc: int
    cpu_s: float = 0.0

    @property
    def files_per_s(self) -> float:
        return self.files / self.wall_s if self.wall_s > 0 else math.nan


def _generate_half(out: str, cases: int, seed: int) -> int:
    from medseg.demo.archive import generate_demo_archive

    generate_demo_archive(Path(out), cases=cases, seed=seed)
    return sum(1 for p in Path(out).rglob("*") if p.is_file())


def build_archive(root: Path, files: int, seed: int, workers: int) -> int:
    """Demo archive of >= ``files`` files (generated in ``workers`` parallel halves) + the real series."""
    marker = root / ".complete.json"
    if marker.is_file() and json.loads(marker.read_text()).get("files_target") == files:
        return int(json.loads(marker.read_text())["files"])
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    cases = math.ceil(files / FILES_PER_CASE)
    parts = max(1, min(workers, cases))
    per = [cases // parts + (1 if i < cases % parts else 0) for i in range(parts)]
    t0 = time.perf_counter()
    with ProcessPoolExecutor(parts) as pool:
        list(
            pool.map(
                _generate_half, [str(root / f"demo-{i}") for i in range(parts)], per, [seed + i for i in range(parts)]
            )
        )
    if REAL_D2N.is_dir():
        for f in REAL_D2N.rglob("*"):
            if f.is_file() and not f.name.endswith(".nii.gz") and "failing" not in f.parts:
                dest = root / "real" / f.relative_to(REAL_D2N)
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(f, dest)
    n = sum(1 for p in root.rglob("*") if p.is_file() and p.name != marker.name)
    marker.write_text(json.dumps({"files_target": files, "files": n, "cases": cases}))
    print(f"# built {root} with {n} files ({cases} demo cases) in {time.perf_counter() - t0:.1f} s", flush=True)
    return n


def measure(tool: str, cmd: list[str], files: int, env: dict[str, str], timeout: float) -> Result:
    """Run ``cmd`` under :func:`bench._measure.run_measured`; the child's JSON line becomes ``outputs``."""
    m = run_measured(tool, cmd, env, timeout)
    if m.rc != 0:
        print(f"# {tool} exited with {m.rc}: {m.log_tail.strip()[-800:]}", file=sys.stderr)
    outputs = ", ".join(f"{k}={v}" for k, v in m.info.items())
    return Result(tool, files, m.wall_s, m.rss_tree_mib, m.rss_max_mib, outputs, m.rc, m.cpu_s)


def _count(folder: Path, suffix: str) -> int:
    return sum(1 for p in folder.rglob(f"*{suffix}"))


def _trash(work: Path) -> Path:
    return work / "trash"


#: What each Python tool imports (its program files), read by :func:`warm_program` before a run.
_PROGRAM_IMPORTS = {
    # the run's own imports, its workers' preload (medseg.cli.fork_server), and what a worker imports after its fork
    "medseg": ("medseg.runtime.cluster", "medseg.workspace", "medseg.cli.fast_exit", "medseg.cli.fork_server",
               *DASK_WORKER_MODULES,
               *INGEST_WORKER_MODULES, "prometheus_client", "numpy.random"),
    "dicom2nifti": ("dicom2nifti",),
    "sitk": ("SimpleITK",),
}
_PROGRAM_IMPORTS["medseg-cluster"] = _PROGRAM_IMPORTS["medseg"]
#: False (``--cold-programs``): every tool reads its own program from disk during its run
WARM_PROGRAMS = True


def warm_program(tool: str, py: str, exe: str | None = None) -> None:
    """Read ``tool``'s own program files into the page cache (untimed), as on a machine that runs it
    regularly: :func:`settle` drops the whole page cache, and a Python tool's interpreter and
    libraries are then read from disk again during its run, a small binary like dcm2niix's hardly
    (medians of 5 runs, ``--tools medseg,dcm2niix``: medseg 3.37 s warm, 3.80 s cold; dcm2niix
    8.21 s warm, 8.04 s cold). Python tools import their modules in a throwaway interpreter;
    dcm2niix prints its help."""
    cmd = [exe, "-h"] if tool == "dcm2niix" and exe else [py, "-c", "import " + ", ".join(_PROGRAM_IMPORTS[tool])]
    done = subprocess.run(cmd, env={**os.environ, "PYTHONPATH": str(REPO), "PYTHONWARNINGS": "ignore"},
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, check=False, timeout=120)
    if done.returncode != 0 and tool != "dcm2niix":  # dcm2niix -h exits non-zero in some versions
        print(f"# warm-up of {tool} failed (its run reads its program from disk): {done.stderr[-300:]}", flush=True)


def run_tool(tool: str, archive: Path, out: Path, files: int, workers: int | str, batch: int, timeout: float) -> Result:
    if out.exists():  # deleted at the end of the bench: freeing GBs of earlier outputs (ext4 with online
        # discard) slowed the run that followed by up to 0.5 s, whichever tool it was
        trash = _trash(out.parent.parent)
        trash.mkdir(exist_ok=True)
        out.rename(trash / f"{out.name}-{time.time_ns()}")
    out.mkdir(parents=True)
    settle(archive)  # every tool starts with the archive cached, no writeback pending, no earlier outputs cached
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    py = sys.executable
    exe = shutil.which("dcm2niix", path=str(Path(py).parent)) or shutil.which("dcm2niix")
    if tool == "dcm2niix" and exe is None:
        raise SystemExit("dcm2niix not found on PATH: apt-get install dcm2niix (or pip install dcm2niix), "
                         "or leave it out with --tools")
    if WARM_PROGRAMS and tool in TOOLS:
        warm_program(tool, py, exe)  # ... and its own program cached
    if tool in ("medseg", "medseg-cluster"):  # workers: a number (LocalCluster) or a scheduler address
        cmd = [py, "-c", _MEDSEG, str(archive), str(out / "ws"), str(workers), str(batch)]
    elif tool == "dcm2niix":
        if exe is None:
            raise SystemExit("dcm2niix not found: .venv/bin/pip install -c constraints.txt dcm2niix")
        cmd = [exe, "-z", "n", "-b", "n", "-o", str(out), str(archive)]
    elif tool == "dicom2nifti":
        cmd = [py, "-c", _DICOM2NIFTI, str(archive), str(out)]
    elif tool == "sitk":
        cmd = [py, "-c", _SITK, str(archive), str(out)]
    else:
        raise SystemExit(f"unknown tool {tool!r}; choose from {TOOLS}")
    res = measure(tool, cmd, files, env, timeout)
    if not res.outputs:
        res.outputs = f"outputs={_count(out, '.nii')}"
    return res


HEAD = (f"{'tool':<14} {'files':>7} {'wall s':>8} {'CPU s':>7} {'files/s':>9} {'RSS tree MiB':>13} "
        f"{'RSS max MiB':>12}  outputs")


def row(r: Result) -> str:
    status = "" if r.rc == 0 else (" (TIMED OUT: wall is a lower bound)" if r.rc == -9 else f" (exit {r.rc})")
    return (
        f"{r.tool:<14} {r.files:>7} {r.wall_s:>8.2f} {r.cpu_s:>7.1f} {r.files_per_s:>9.0f} {r.rss_tree_mib:>13.0f} "
        f"{r.rss_max_mib:>12.0f}  {r.outputs}{status}"
    )


def median_run(results: list[Result]) -> Result:
    """The run with the median wall time (the lower middle one for an even count)."""
    return sorted(results, key=lambda r: r.wall_s)[(len(results) - 1) // 2]


def print_table(results: list[Result], title: str) -> None:
    print(f"\n{title}")
    print(HEAD)
    print("-" * len(HEAD))
    for r in results:
        print(row(r))


def _on_standing_cluster(work: Path, big: Path, n_big: int, small: Path, n_small: int,
                         args: argparse.Namespace) -> Result:
    """medseg on a Dask cluster started once (see the module doc); the run connects by address."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
           "MKL_NUM_THREADS": "1", "DASK_DISTRIBUTED__WORKER__PROFILE__ENABLED": "False"}  # as deploy/ runs them
    svc = Services(work / "cluster-logs", env, REPO)
    try:
        address, _, _ = svc.dask(work, args.workers)
        warm = (small, n_small) if n_small else (big, n_big)
        run_tool("medseg-cluster", warm[0], work / "out" / "medseg-cluster-warm", warm[1], address, args.batch,
                 args.timeout)
        return run_tool("medseg-cluster", big, work / "out" / "medseg-cluster", n_big, address, args.batch,
                        args.timeout)
    finally:
        svc.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--files", type=int, default=20000, help="demo archive size in files (>= this many)")
    ap.add_argument("--small-files", type=int, default=4000, help="smaller archive for the RSS scaling check")
    ap.add_argument("--workdir", type=Path, default=None, help="keep archives/outputs here (default: temp dir)")
    ap.add_argument("--tools", default=",".join(TOOLS), help=f"comma-separated subset of {','.join(TOOLS)}")
    ap.add_argument("--workers", type=int, default=2, help="medseg Dask workers (LocalCluster)")
    ap.add_argument("--batch", type=int, default=IngestConfig().files_per_batch,
                    help="medseg files per header task (at most; see medseg.runtime.cluster.task_size)")
    ap.add_argument("--repeat", type=int, default=3,
                    help="runs per tool, interleaved; the table and RESULT report each tool's median run")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--timeout", type=float, default=300.0, help="seconds per tool run before it is killed")
    ap.add_argument("--cold-programs", action="store_true",
                    help="do not read each tool's program into the page cache before its run (see warm_program)")
    args = ap.parse_args()
    global WARM_PROGRAMS
    WARM_PROGRAMS = not args.cold_programs
    tools = [t for t in args.tools.split(",") if t]
    work = args.workdir or Path(tempfile.mkdtemp(prefix="medseg-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        big = work / f"archive-{args.files}"
        n_big = build_archive(big, args.files, args.seed, args.workers)
        small = work / f"archive-{args.small_files}"
        n_small = build_archive(small, args.small_files, args.seed + 100, args.workers) if args.small_files else 0
        print(f"# cpu count {os.cpu_count()}, load average {os.getloadavg()}, "
              f"programs {'warm' if WARM_PROGRAMS else 'cold'}", flush=True)
        runs: dict[str, list[Result]] = {t: [] for t in tools}
        for rep in range(args.repeat):  # interleaved: a slow spell of the VM hits every tool alike
            for tool in tools:
                print(f"# run {rep + 1}/{args.repeat}: {tool} on {n_big} files ...", flush=True)
                if tool == "medseg-cluster":
                    res = _on_standing_cluster(work, big, n_big, small, n_small, args)
                else:
                    res = run_tool(tool, big, work / "out" / tool, n_big, args.workers, args.batch, args.timeout)
                runs[tool].append(res)
                print(f"#   {row(res)}", flush=True)
        results = [median_run(runs[t]) for t in tools]
        print_table(results, f"Archive: {n_big} files ({big}); the median of {args.repeat} run(s) per tool")
        if args.repeat > 1:
            for t in tools:
                print(f"{t} wall s per run: {', '.join(f'{r.wall_s:.2f}' for r in runs[t])}")
        if "medseg-cluster" in tools:
            print("medseg-cluster: CPU and RSS of the ingest process only (the standing workers are not its children)")
        if args.small_files and "medseg" in tools:
            small_res = run_tool(
                "medseg", small, work / "out" / "medseg-small", n_small, args.workers, args.batch, args.timeout
            )
            big_res = next(r for r in results if r.tool == "medseg")
            print_table([small_res, big_res], "medseg peak RSS vs archive size")
            print(
                f"RSS scaling: {n_small} -> {n_big} files ({n_big / max(n_small, 1):.1f}x): tree "
                f"{small_res.rss_tree_mib:.0f} -> {big_res.rss_tree_mib:.0f} MiB "
                f"({big_res.rss_tree_mib / max(small_res.rss_tree_mib, 1):.2f}x), largest process "
                f"{small_res.rss_max_mib:.0f} -> {big_res.rss_max_mib:.0f} MiB"
            )
        walls = {r.tool: r.wall_s for r in results}
        anchors = {t: w for t, w in walls.items() if not t.startswith("medseg")}
        if "medseg" in walls and anchors:
            fastest = min(anchors, key=lambda t: anchors[t])
            ratio = walls["medseg"] / anchors[fastest]
            for t, w in sorted(anchors.items()):
                print(f"medseg / {t}: {walls['medseg'] / w:.2f}x")
            if "sitk" in walls:
                ok = walls["medseg"] <= walls["sitk"]
                print(f"target medseg <= 1.0x SimpleITK loop: {'met' if ok else 'MISSED'}")
            if "dcm2niix" in walls:
                ok = walls["medseg"] <= 0.5 * walls["dcm2niix"]
                print(f"target medseg <= 0.5x dcm2niix: {'met' if ok else 'MISSED'}")
                if "medseg-cluster" in walls:
                    cluster = walls["medseg-cluster"] / walls["dcm2niix"]
                    print(f"medseg on a standing cluster / dcm2niix: {cluster:.2f}x")
        else:
            fastest, ratio = "-", math.nan

        def fmt(t: str) -> str:
            return f"{walls[t]:.2f}" if t in walls else "nan"

        standing = ""
        if "medseg-cluster" in walls and anchors:
            standing = (f" medseg_cluster_s={fmt('medseg-cluster')} "
                        f"ratio_cluster={walls['medseg-cluster'] / anchors[fastest]:.2f}")
        print(
            f"RESULT medseg_s={fmt('medseg')} dcm2niix_s={fmt('dcm2niix')} dicom2nifti_s={fmt('dicom2nifti')} "
            f"sitk_s={fmt('sitk')} ratio={ratio:.2f}{standing}"
        )
    finally:
        shutil.rmtree(_trash(work), ignore_errors=True)
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
