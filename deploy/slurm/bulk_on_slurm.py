#!/usr/bin/env python
"""Run the medseg bulk archive flow with its Dask fan-out on SLURM worker jobs (dask-jobqueue).

Run on a login node (or in a small long-running batch job) with the shared venv:

    pip install -c constraints.txt -e ".[deploy]"     # dask-jobqueue
    python deploy/slurm/bulk_on_slurm.py /shared/medseg/site.yaml --jobs 8

The scheduler lives in this process; SLURM jobs of ``--processes`` single-threaded workers join it.
The bulk flow gets the scheduler address as ``dask.address`` and runs its Prefect tasks here (set
``PREFECT_API_URL`` to watch it in the UI). A job killed by walltime or pre-emption only loses its
in-flight sub-batches, which Dask re-runs; rerunning this script after a crash skips finished batches.
"""

from __future__ import annotations

import argparse

from dask_jobqueue import SLURMCluster
from distributed import Client

from medseg.flows.bulk import bulk_flow


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("config", help="medseg YAML config (sources, workspace on the shared filesystem)")
    ap.add_argument("--jobs", type=int, default=4, help="SLURM worker jobs")
    ap.add_argument("--processes", type=int, default=8, help="single-threaded Dask workers per job")
    ap.add_argument("--queue", default="cpu")
    ap.add_argument("--account", default=None)
    ap.add_argument("--walltime", default="08:00:00")
    args = ap.parse_args()
    cluster = SLURMCluster(
        queue=args.queue,
        account=args.account,
        cores=args.processes,
        processes=args.processes,
        memory=f"{4 * args.processes}GB",
        walltime=args.walltime,
        local_directory="$TMPDIR",
        job_script_prologue=["export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1",
                             "export DASK_DISTRIBUTED__WORKER__PROFILE__ENABLED=False"],
    )
    cluster.scale(jobs=args.jobs)
    try:
        with Client(cluster) as client:
            client.wait_for_workers(args.processes, timeout=3600)  # start once the first job runs
            print("Dask dashboard:", client.dashboard_link)
            result = bulk_flow(config_path=args.config, overrides=[f"dask.address={cluster.scheduler_address}"])
            print({k: v for k, v in result.items() if k not in ("batches_run", "batches_skipped")})
    finally:
        cluster.close()


if __name__ == "__main__":
    main()
