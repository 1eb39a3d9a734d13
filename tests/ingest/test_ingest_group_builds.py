"""Study groups on Dask (medseg.ingest.group_builds): consecutive groups share a task up to a file count.

Whole-run behaviour (study order, Dask against sequential) is tested in test_ingest_streaming.py."""

from __future__ import annotations

import medseg.ingest.group_builds as run_module
import medseg.ingest.study_groups as study_groups


def test_build_tasks_are_sized_by_files_and_never_split_a_group() -> None:
    """Consecutive study groups share a Dask task until it holds ``files_per_task`` files."""
    def job(n: int) -> study_groups.GroupJob:
        return study_groups.GroupJob(previous={}, rows=[("p", 0, 0, "ok", None, None, "{}")] * n)

    sizes = [3, 5, 1, 1, 6, 2]
    chunks = list(run_module.chunks_by_files((job(n) for n in sizes), files_per_task=lambda done: 4))
    assert [[j.n_files for j in chunk] for chunk in chunks] == [[3, 5], [1, 1, 6], [2]]
    assert [len(c) for c in run_module.chunks_by_files((job(n) for n in sizes), lambda done: 1)] == [1] * 6
    # the size asked for depends on the files already chunked (medseg.runtime.cluster.TaskSizer)
    asked: list[int] = []

    def size(done: int) -> int:
        asked.append(done)
        return 8 if done < 8 else 2

    shrinking = list(run_module.chunks_by_files((job(n) for n in sizes), size))
    assert [[j.n_files for j in chunk] for chunk in shrinking] == [[3, 5], [1, 1], [6], [2]]
    assert asked == [0, 8, 10, 16, 18]  # asked again after each chunk it closed
