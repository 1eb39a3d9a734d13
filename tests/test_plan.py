"""medseg.plan: the plan's content hash, and save/load refusing a hand-edited file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from phantom_data import make_plan

from medseg.plan import Plan


def test_plan_round_trips_and_its_hash_follows_the_content(tmp_path: Path) -> None:
    plan = make_plan()
    assert plan.plan_hash() == make_plan().plan_hash() and len(plan.plan_hash()) == 16
    assert make_plan(filters=(8, 16, 32, 64)).plan_hash() != plan.plan_hash()
    path = plan.save(tmp_path / "plan.json")
    assert json.loads(path.read_text())["plan_hash"] == plan.plan_hash()
    assert Plan.load(path) == plan
    data = json.loads(path.read_text())
    data["filters"] = [1, 2, 3, 4]
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="edited by hand"):
        Plan.load(path)
