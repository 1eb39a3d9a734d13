"""Where a run's cases go (``infer.workers``, ``dask.address``, GPUs, case count): the pure rule."""

from __future__ import annotations

from medseg.config import DaskConfig
from medseg.inference.layout import AUTO_MIN_CASES_PER_WORKER, choose_layout

LOCAL = DaskConfig(n_workers=2, threads_per_worker=1)
REMOTE = DaskConfig(address="tcp://scheduler:8786")


def test_one_worker_or_no_case_stays_in_process() -> None:
    assert choose_layout(1, LOCAL, "cpu", [], 100).kind == "in-process"
    assert choose_layout(1, REMOTE, "cpu", [], 100).kind == "in-process"  # 1 = in this process, even with a cluster
    assert choose_layout("auto", REMOTE, "cpu", [], 0).kind == "in-process"
    assert choose_layout(4, LOCAL, "cpu", [], 1).kind == "in-process"  # no LocalCluster for one case


def test_a_configured_cluster_takes_the_cases_unless_only_this_machine_has_a_gpu() -> None:
    layout = choose_layout("auto", REMOTE, "auto", [], 1)
    assert (layout.kind, layout.workers, layout.describe()) == ("cluster", 0, "cluster")
    assert choose_layout("auto", REMOTE, "auto", ["0"], 50, cluster_has_gpu_workers=False).kind == "in-process"
    assert choose_layout("auto", REMOTE, "auto", ["0"], 50, cluster_has_gpu_workers=True).kind == "cluster"
    assert choose_layout("auto", REMOTE, "cpu", ["0"], 50, cluster_has_gpu_workers=False).kind == "cluster"


def test_a_multi_gpu_node_starts_one_pinned_worker_per_gpu() -> None:
    layout = choose_layout("auto", LOCAL, "auto", ["2", "5", "7"], 8)
    assert (layout.kind, layout.workers, layout.gpus) == ("local", 3, ("2", "5", "7"))
    assert layout.describe() == "LocalCluster 3 GPU workers"
    assert choose_layout(2, LOCAL, "cuda", ["0", "1", "2"], 8).gpus == ("0", "1")  # at most infer.workers
    assert choose_layout("auto", LOCAL, "auto", ["0", "1", "2"], 2).gpus == ("0", "1")  # at most the cases
    assert choose_layout("auto", LOCAL, "auto", ["0"], 8).kind == "in-process"  # one GPU: this process uses it
    cpu = choose_layout(2, LOCAL, "cpu", ["0", "1"], 8)  # train.device=cpu: the GPUs are not used
    assert (cpu.kind, cpu.gpus, cpu.workers) == ("local", (), 2)


def test_auto_on_a_cpu_node_fans_out_when_the_workers_cover_the_cores_and_have_cases_enough() -> None:
    enough = AUTO_MIN_CASES_PER_WORKER * LOCAL.n_workers
    few = choose_layout("auto", LOCAL, "auto", [], enough - 1, cores=2)
    assert few.kind == "in-process" and "dask.n_workers=2" in few.reason
    many = choose_layout("auto", LOCAL, "auto", [], enough, cores=2)
    assert (many.kind, many.workers, many.describe()) == ("local", 2, "LocalCluster 2 workers")
    # 2 single-threaded workers on 16 cores: one process on all cores is faster
    wide = choose_layout("auto", LOCAL, "auto", [], 100, cores=16)
    assert wide.kind == "in-process" and "2 thread(s) for 16 cores" in wide.reason
    sixteen = DaskConfig(n_workers=8, threads_per_worker=2)
    assert choose_layout("auto", sixteen, "auto", [], 100, cores=16).workers == 8
    assert choose_layout("auto", DaskConfig(n_workers=1), "cpu", [], 100, cores=1).kind == "in-process"
    assert choose_layout(3, LOCAL, "cpu", [], 2, cores=16).workers == 2  # explicit n: never more than the cases
