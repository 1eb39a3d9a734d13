"""medseg.runtime.scratch: a list written in pickled chunks reads back whole and in order."""

from __future__ import annotations

from pathlib import Path

from medseg.runtime.scratch import read_scratch, write_scratch


def test_a_scratch_list_reads_back_in_order(tmp_path: Path) -> None:
    path = tmp_path / ".scan-x.pkl"
    items = [(f"/a/{i}", i, i * 10) for i in range(10)]
    assert write_scratch(path, iter(items), chunk=4) == 10
    assert list(read_scratch(path)) == items
    assert write_scratch(path, []) == 0 and list(read_scratch(path)) == []  # replaced, empty
