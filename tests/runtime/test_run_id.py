"""medseg.runtime.run_id: one run-id format (UTC time, sortable), a prefix and a unique suffix."""

from __future__ import annotations

import re

from medseg.runtime.run_id import new_run_id


def test_run_ids_are_utc_stamps_with_an_optional_prefix_and_suffix() -> None:
    assert re.fullmatch(r"\d{8}-\d{6}", new_run_id())
    assert re.fullmatch(r"nightly-\d{8}-\d{6}", new_run_id("nightly"))
    assert re.fullmatch(r"bulk-\d{8}-\d{6}", new_run_id("bulk"))
    unique = {new_run_id(unique=True) for _ in range(50)}
    assert len(unique) == 50 and all(re.fullmatch(r"\d{8}-\d{6}-[0-9a-f]{6}", u) for u in unique)
