"""medseg.training.promotion: which bundle becomes the champion of its family, and why."""

from __future__ import annotations

import json

from saved_bundles import dice as _dice
from saved_bundles import save as _save

from medseg.training.bundle import champion, promote
from medseg.workspace import Workspace


def test_first_bundle_becomes_champion_and_worse_one_does_not(phantom_ws: Workspace) -> None:
    assert champion(phantom_ws, "cnn") is None
    first = _save(phantom_ws, {"case003": _dice(0.7)})
    assert promote(phantom_ws, "cnn", first)
    assert champion(phantom_ws, "cnn") == first
    worse = _save(phantom_ws, {"case003": _dice(0.6)}, seed=1)
    assert not promote(phantom_ws, "cnn", worse)
    assert champion(phantom_ws, "cnn") == first
    better = _save(phantom_ws, {"case003": _dice(0.75)}, seed=2)
    assert promote(phantom_ws, "cnn", better)
    pointer = json.loads(phantom_ws.champion_path("cnn").read_text())
    assert pointer["version"] == better.name and pointer["previous"][-1]["version"] == first.name
    assert champion(phantom_ws, "gan") is None  # families are independent


def test_margin_is_required_over_the_champion(phantom_ws: Workspace) -> None:
    first = _save(phantom_ws, {"case003": _dice(0.70)})
    assert promote(phantom_ws, "cnn", first)
    tie = _save(phantom_ws, {"case003": _dice(0.70)}, seed=1)
    assert not promote(phantom_ws, "cnn", tie, margin=0.01)
    assert promote(phantom_ws, "cnn", tie, margin=0.0)


def test_comparison_uses_only_shared_validation_cases(phantom_ws: Workspace) -> None:
    champ = _save(phantom_ws, {"a": _dice(0.9), "b": _dice(0.1)})  # mean 0.5, but 0.9 on case a
    assert promote(phantom_ws, "cnn", champ)
    challenger = _save(phantom_ws, {"a": _dice(0.8), "c": _dice(0.9)}, seed=1)  # mean 0.85, 0.8 on a
    assert not promote(phantom_ws, "cnn", challenger)
    pointer = json.loads(phantom_ws.champion_path("cnn").read_text())
    assert pointer["version"] == champ.name


def test_no_shared_cases_revalidates_champion_with_same_plan(phantom_ws: Workspace) -> None:
    champ = _save(phantom_ws, {"elsewhere": _dice(0.99)})
    assert promote(phantom_ws, "cnn", champ)
    # a random-weight champion scores low on the workspace's real val case, the challenger claims 0.95
    challenger = _save(phantom_ws, {"case003": _dice(0.95)}, seed=1)
    assert promote(phantom_ws, "cnn", challenger)
    pointer = json.loads(phantom_ws.champion_path("cnn").read_text())
    assert pointer["compared_on_cases"] == ["case003"] and pointer["champion_score"] < 0.95


def test_no_shared_cases_and_other_plan_keeps_champion(phantom_ws: Workspace) -> None:
    champ = _save(phantom_ws, {"elsewhere": _dice(0.5)})
    assert promote(phantom_ws, "cnn", champ)
    other = _save(phantom_ws, {"case003": _dice(0.95)}, seed=1, plan_filters=(8, 16, 32, 64))
    assert not promote(phantom_ws, "cnn", other)
    assert champion(phantom_ws, "cnn") == champ


def test_dangling_champion_pointer_means_no_champion(phantom_ws: Workspace) -> None:
    first = _save(phantom_ws, {"case003": _dice(0.5)})
    assert promote(phantom_ws, "cnn", first)
    (first / "metadata.json").unlink()
    assert champion(phantom_ws, "cnn") is None
    second = _save(phantom_ws, {"case003": _dice(0.1)}, seed=1)
    assert promote(phantom_ws, "cnn", second)


def test_time_capped_challenger_never_replaces_a_champion_that_completed_its_budget(phantom_ws: Workspace) -> None:
    completed = _save(phantom_ws, {"case003": _dice(0.60)})
    assert promote(phantom_ws, "cnn", completed)
    capped = _save(phantom_ws, {"case003": _dice(0.90)}, seed=1, stopped_reason="time_cap")
    assert not promote(phantom_ws, "cnn", capped)  # better score, but trained less than configured
    assert champion(phantom_ws, "cnn") == completed
    assert promote(phantom_ws, "cnn", capped, allow_capped=True)  # train.promote_capped
    assert champion(phantom_ws, "cnn") == capped


def test_time_capped_bundle_still_competes_with_other_capped_bundles_and_becomes_first_champion(
    phantom_ws: Workspace,
) -> None:
    first = _save(phantom_ws, {"case003": _dice(0.5)}, stopped_reason="time_cap")
    assert promote(phantom_ws, "cnn", first)  # nothing to protect yet
    better = _save(phantom_ws, {"case003": _dice(0.7)}, seed=1, stopped_reason="time_cap")
    assert promote(phantom_ws, "cnn", better)
    completed = _save(phantom_ws, {"case003": _dice(0.8)}, seed=2)
    assert promote(phantom_ws, "cnn", completed)
