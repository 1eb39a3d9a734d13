"""medseg.training.promotion: which bundle becomes the champion of its family, and why."""

from __future__ import annotations

import json

import pytest
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


def test_ensembles_are_compared_with_ensembles_on_their_cross_validation_dice(phantom_ws: Workspace) -> None:
    from saved_bundles import save_ensemble

    oof = ["case000", "case001", "case002"]
    champ = save_ensemble(phantom_ws, {c: _dice(0.7) for c in oof})
    assert promote(phantom_ws, "cnn", champ)
    worse = save_ensemble(phantom_ws, {c: _dice(0.6) for c in oof}, folds=3, seed=1)
    assert not promote(phantom_ws, "cnn", worse)
    better = save_ensemble(phantom_ws, {**{c: _dice(0.8) for c in oof}, "case003": _dice(0.0)}, seed=2)
    assert promote(phantom_ws, "cnn", better)  # 0.8 > 0.7 on the 3 shared out-of-fold cases (mean 0.6 on all 4)
    pointer = json.loads(phantom_ws.champion_path("cnn").read_text())
    assert pointer["kind"] == "ensemble" and pointer["compared"].startswith("cross-validation mean Dice")
    assert pointer["compared_on_cases"] == oof and pointer["challenger_score"] == pytest.approx(0.8)
    assert pointer["champion_score"] == pytest.approx(0.7)


def test_an_ensemble_and_a_single_model_are_never_scored_against_each_other(phantom_ws: Workspace) -> None:
    from saved_bundles import save_ensemble

    from medseg.io.bundle import read_metadata
    from medseg.training.promotion import decide

    single = _save(phantom_ws, {"case003": _dice(0.9)})
    assert promote(phantom_ws, "cnn", single)
    ensemble = save_ensemble(phantom_ws, {c: _dice(0.1) for c in ("case000", "case003")})
    decision = decide(phantom_ws, read_metadata(ensemble), read_metadata(single), 0.0, champion_path=single)
    assert decision.promote and decision.challenger_score is None and decision.champion_score is None
    assert "not comparable" in decision.reason and "2-fold ensemble" in decision.reason
    assert promote(phantom_ws, "cnn", ensemble)  # train.folds asks for ensembles now: it replaces the single
    pointer = json.loads(phantom_ws.champion_path("cnn").read_text())
    assert pointer["kind"] == "ensemble" and pointer["champion_score"] is None
    back = _save(phantom_ws, {"case003": _dice(0.05)}, seed=3)
    assert promote(phantom_ws, "cnn", back)  # and back: the kind follows the config, never the scores
    assert json.loads(phantom_ws.champion_path("cnn").read_text())["compared"].startswith("validation mean Dice")


def test_ensembles_without_shared_out_of_fold_cases_keep_the_champion(phantom_ws: Workspace) -> None:
    from saved_bundles import save_ensemble

    champ = save_ensemble(phantom_ws, {"case000": _dice(0.1), "case001": _dice(0.1)})
    assert promote(phantom_ws, "cnn", champ)
    other = save_ensemble(phantom_ws, {"case002": _dice(0.9), "case003": _dice(0.9)}, seed=1)
    assert not promote(phantom_ws, "cnn", other)  # no re-validation: the champion's folds trained on these
    assert champion(phantom_ws, "cnn") == champ
