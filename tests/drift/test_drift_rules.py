"""Drift rules on hand-made appearances: range + margin for numbers, unseen values for categories,
robust to a handful of training cases; the nightly gate's decision."""

from __future__ import annotations

import pytest

from medseg.config import DriftCategory, MedsegConfig
from medseg.drift.rules import DriftRules, build_reference, check_case
from medseg.ops.nightly import drift_hold
from medseg.preprocess.appearance import CaseAppearance, ChannelIntensity
from medseg.stages.outcome import StageOutcome


def ct(case_id: str, z: float = 1.0, p01: float = -1024.0, p99: float = 600.0, manufacturer: str = "ACME",
       protocol: str = "", channels: list[str] | None = None) -> CaseAppearance:
    stats = ChannelIntensity(p01=p01, p50=-100.0, p99=p99, mean=-300.0, std=500.0)
    names = channels or []
    return CaseAppearance(case_id=case_id, modality="CT", manufacturer=manufacturer, model="Scan 9",
                          protocol=protocol, spacing=(z, 0.8, 0.8), shape=(100, 512, 512), channel_names=names,
                          intensity=[stats] * max(1, len(names)), samples=100)


TRAINING = [ct("t1", z=0.98), ct("t2", z=1.05, p99=640.0), ct("t3", z=1.0, p99=620.0)]
RULES = DriftRules()


def reasons(case: CaseAppearance, training: list[CaseAppearance] = TRAINING, rules: DriftRules = RULES) -> list[str]:
    return [f.reason for f in check_case(case, build_reference(training, rules), rules)]


def test_a_case_like_the_training_cases_is_not_flagged() -> None:
    assert reasons(ct("new", z=1.02, p99=630.0)) == []
    # the margins: spacing up to 1.5x the training range, intensity up to 25 % of the dynamic range (~1640)
    assert reasons(ct("new", z=1.05 * 1.5, p99=640.0 + 0.25 * 1644.0 - 1)) == []


def test_spacing_outside_the_widened_range_is_flagged_with_a_readable_reason() -> None:
    assert reasons(ct("new", z=2.5)) == ["spacing z 2.50 mm outside training 0.98 to 1.05 mm (allowed 0.65 to 1.58)"]
    assert reasons(ct("new", z=0.5)) == ["spacing z 0.50 mm outside training 0.98 to 1.05 mm (allowed 0.65 to 1.58)"]


def test_another_intensity_scale_is_flagged() -> None:
    got = reasons(ct("new", p01=0.0, p99=4000.0))
    assert got == ["intensity p01 0 outside training -1024 to -1024 (allowed -1435 to -613)",
                   "intensity p99 4000 outside training 600 to 640 (allowed 189 to 1051)"]


def test_categories_never_seen_in_training_are_flagged_unknown_ones_are_not() -> None:
    assert reasons(ct("new", manufacturer="Other Corp")) == ["manufacturer 'Other Corp' not in training ('ACME')"]
    assert reasons(ct("new", manufacturer="")) == []  # a NIfTI case: unknown, not compared
    assert reasons(ct("new", protocol="Abdomen")) == []  # no training case recorded a protocol: not compared
    quiet = DriftRules(categories=[DriftCategory.MODALITY])  # ops.drift_categories: manufacturer not checked
    assert reasons(ct("new", manufacturer="Other Corp"), rules=quiet) == []
    many = [ct(f"t{k}", manufacturer=f"M{k}") for k in range(6)]
    assert reasons(ct("new", manufacturer="X"), training=many) == [
        "manufacturer 'X' not in training ('M0', 'M1', 'M2', 'M3' and 2 more)"]


def test_other_channels_are_flagged_and_their_intensities_not_compared() -> None:
    training = [ct("t1", channels=["T1", "T2"]), ct("t2", channels=["T1", "T2"])]
    got = reasons(ct("new", p99=9999.0, channels=["T1", "FLAIR"]), training=training)
    assert got == ["channels ['T1', 'FLAIR'] differ from training ['T1', 'T2']"]
    per_channel = reasons(ct("new", p99=9999.0, channels=["T1", "T2"]), training=training)
    assert [r.split(" 9999")[0] for r in per_channel] == ["intensity p99 [T1]", "intensity p99 [T2]"]


def test_one_training_case_is_enough_and_none_is_an_error() -> None:
    assert reasons(ct("new", z=1.2), training=[ct("t1")]) == []
    assert len(reasons(ct("new", z=1.6), training=[ct("t1")])) == 1
    with pytest.raises(ValueError, match="at least one"):
        build_reference([], RULES)


def test_the_rules_come_from_the_ops_config() -> None:
    cfg = MedsegConfig.model_validate({"ops": {"drift_geometry_factor": 2.0, "drift_intensity_margin": 0.1,
                                               "drift_categories": ["modality"]}})
    rules = DriftRules.from_ops(cfg.ops)
    assert (rules.geometry_factor, rules.intensity_margin, rules.categories) == (2.0, 0.1, [DriftCategory.MODALITY])


def test_the_nightly_gate_holds_promotion_only_above_the_configured_share() -> None:
    drift = StageOutcome(stage="drift", stats={"cases": 4, "out_of_distribution": 2, "share": 0.5})
    assert drift_hold(drift, None) is None  # report only
    assert drift_hold(drift, 0.5) is None  # at the limit: promotion goes ahead
    held = drift_hold(drift, 0.25)
    assert held == ("drift: 2 of 4 new case(s) out of distribution (50% > ops.drift_max_share 25%), "
                    "see drift.md of this run")
    assert drift_hold(StageOutcome(stage="drift", skipped=True, reason="no plan yet"), 0.0) is None
