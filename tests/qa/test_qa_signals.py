"""Each QA signal on its own: volume vs the training label volumes, confidence, model agreement; score and rank."""

from __future__ import annotations

import math

import numpy as np
import pytest
from pydantic import ValidationError

from medseg.config import QAConfig
from medseg.evaluation.metrics import dice
from medseg.preprocess.fingerprint import CaseFingerprint, Fingerprint
from medseg.qa.assess import assess_measured
from medseg.qa.confidence import BINS, Confidence, ConfidenceTally
from medseg.qa.measure import mean_dice
from medseg.qa.record import MAX_SCORE, CaseQA, SignalKind, ranked
from medseg.qa.signals import agreement_signal, case_qa, case_signals, confidence_signal, volume_signal
from medseg.qa.volumes import FOREGROUND, VolumeRange, label_volumes_ml, training_volumes

CFG = QAConfig()
ORGAN = VolumeRange(cases=10, min_ml=30.0, median_ml=60.0, max_ml=96.0)


def test_a_volume_far_above_the_training_max_is_flagged_with_the_numbers() -> None:
    s = volume_signal("cnn", "organ", 412.0, ORGAN, CFG)
    assert s.kind == SignalKind.VOLUME and s.flagged
    assert s.reason == "cnn: organ mask volume 412 ml > 3x training max 96 ml"
    assert s.score == pytest.approx(412 / (3 * 96), abs=1e-4)
    assert not volume_signal("cnn", "organ", 280.0, ORGAN, CFG).flagged  # below 3x max: in range


def test_a_volume_far_below_the_training_min_and_an_empty_mask_are_flagged() -> None:
    low = volume_signal("gan", "organ", 5.0, ORGAN, CFG)
    assert low.flagged and low.score == pytest.approx(2.0)
    assert low.reason == "gan: organ mask volume 5 ml < training min 30 ml / 3"
    empty = volume_signal("gan", FOREGROUND, 0.0, ORGAN, CFG)
    assert empty.score == MAX_SCORE and empty.reason == "gan: empty mask (every training case has >= 30 ml)"
    assert not volume_signal("gan", "organ", 12.0, ORGAN, CFG).flagged  # above min / 3
    assert volume_signal("gan", "organ", 12.0, ORGAN, QAConfig(volume_factor=2.0)).flagged  # a site's tighter factor


def test_empty_is_fine_for_a_class_some_training_cases_lack_and_a_never_seen_class_is_flagged() -> None:
    lesion = VolumeRange(cases=10, min_ml=0.0, median_ml=2.0, max_ml=9.0)
    assert volume_signal("cnn", "lesion", 0.0, lesion, CFG).score == 0.0
    never = VolumeRange(cases=10, min_ml=0.0, median_ml=0.0, max_ml=0.0)
    s = volume_signal("cnn", "lesion", 0.4, never, CFG)
    assert s.score == MAX_SCORE and "a class no training case has" in s.reason


def _confidence(shares: dict[int, int]) -> Confidence:
    hist = [0] * BINS
    for b, n in shares.items():
        hist[b] = n
    return Confidence(foreground_voxels=sum(hist), histogram=hist)


def test_low_confidence_on_most_of_the_foreground_is_flagged() -> None:
    rec = _confidence({12: 60, 19: 40})  # 60 voxels at p in [0.60, 0.65), 40 at >= 0.95
    assert rec.share_below(0.75) == pytest.approx(0.6) and rec.share_below(0.6) == 0.0
    s = confidence_signal("cnn", rec, CFG)
    assert s.flagged and s.score == pytest.approx(1.2) and s.value == pytest.approx(0.6)
    assert s.reason == "cnn: low confidence (< 0.75) on 60% of 100 foreground voxels"
    assert not confidence_signal("cnn", _confidence({12: 40, 19: 60}), CFG).flagged
    assert _confidence({}).share_below(0.75) == 0.0  # no foreground: nothing uncertain


def test_models_that_disagree_are_flagged() -> None:
    s = agreement_signal("cnn", "gan", 0.31, CFG)
    assert s.flagged and s.score == pytest.approx(0.69 / 0.5) and s.reason.startswith("cnn vs gan Dice 0.31")
    assert not agreement_signal("cnn", "gan", 0.8, CFG).flagged


def test_the_case_score_is_its_strongest_signal_and_flagged_cases_rank_first() -> None:
    volumes = {"cnn": {"organ": 412.0, "lesion": 1.0, FOREGROUND: 413.0}}
    training = {"organ": ORGAN, "lesion": VolumeRange(cases=10, min_ml=0.0, median_ml=2.0, max_ml=9.0),
                FOREGROUND: VolumeRange(cases=10, min_ml=30.0, median_ml=60.0, max_ml=120.0)}
    confidences = {"cnn": _confidence({12: 55, 19: 45})}
    signals = case_signals(volumes, confidences, {("cnn", "gan"): math.nan}, training, CFG)
    assert {s.kind for s in signals} == {SignalKind.VOLUME, SignalKind.CONFIDENCE}  # NaN Dice (both empty): none
    case = case_qa("c1", signals, volumes)
    assert case.flagged and case.score == max(s.score for s in signals)
    assert case.reasons[0].startswith("cnn: organ mask volume 412 ml")  # strongest first
    assert all(r in case.reasons for r in (s.reason for s in signals if s.flagged))
    calm = CaseQA(case_id="a", score=0.9, flagged=False)
    worse = CaseQA(case_id="b", score=3.0, flagged=True)
    assert [c.case_id for c in ranked([calm, case, worse])] == ["b", "c1", "a"]


def test_the_whole_foreground_of_a_one_class_model_is_not_scored_twice() -> None:
    volumes = {"cnn": {"organ": 0.0, FOREGROUND: 0.0}}
    signals = case_signals(volumes, {}, {}, {"organ": ORGAN, FOREGROUND: ORGAN}, CFG)
    assert [s.subject for s in signals] == ["organ"]


def test_assess_measured_scores_one_prediction_written_by_medseg_predict() -> None:
    case = assess_measured("c9", "cnn", {"organ": 0.0, FOREGROUND: 0.0}, None, {"organ": ORGAN}, CFG)
    assert case.flagged and case.score == MAX_SCORE and case.reasons == [
        "cnn: empty organ mask (every training case has >= 30 ml)"]
    assert not assess_measured("c9", "cnn", {"organ": 50.0}, None, {"organ": ORGAN}, CFG).flagged


def test_the_confidence_tally_equals_the_softmax_of_the_whole_volume() -> None:
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 2, (3, 9, 7, 5)).astype(np.float32)
    tally = ConfidenceTally(probabilities=False)
    for z0 in range(0, 9, 4):  # slab by slab, as inference streams them
        tally.feed(logits[:, z0 : z0 + 4])
    e = np.exp(logits - logits.max(axis=0))
    probs = e / e.sum(axis=0)
    fg = probs.argmax(axis=0) != 0
    top = probs.max(axis=0)[fg]
    rec = tally.result()
    assert rec.foreground_voxels == int(fg.sum())
    assert rec.share_below(0.75) == pytest.approx(float((top < 0.75).mean()))
    assert rec.histogram == np.histogram(top, bins=BINS, range=(0, 1))[0].tolist()
    ens = ConfidenceTally(probabilities=True)  # an ensemble hands out probabilities already
    ens.feed(probs.astype(np.float32))
    assert ens.result() == rec


def test_mean_dice_from_counts_equals_the_metrics_module() -> None:
    rng = np.random.default_rng(1)
    a = rng.integers(0, 3, (6, 8, 8)).astype(np.uint8)
    b = np.where(rng.random(a.shape) < 0.3, rng.integers(0, 3, a.shape), a).astype(np.uint8)
    ca, cb = np.bincount(a.ravel(), minlength=256), np.bincount(b.ravel(), minlength=256)
    overlap = np.bincount(a[(a == b) & (a != 0)], minlength=256)
    expected = np.mean([dice(a == c, b == c) for c in (1, 2)])
    assert mean_dice(ca, cb, overlap) == pytest.approx(expected)
    zero = np.zeros(256, dtype=np.int64)
    assert math.isnan(mean_dice(zero, zero, zero))


def test_training_volumes_come_from_the_fingerprint_in_ml() -> None:
    def case(cid: str, organ: int, lesion: int, spacing: tuple[float, float, float]) -> CaseFingerprint:
        voxels = {0: 1000, 1: organ, **({2: lesion} if lesion else {})}
        return CaseFingerprint(case_id=cid, source_hash="h", modality="CT", spacing=spacing, shape=(10, 10, 10),
                               shape_after_crop=(10, 10, 10), intensity=None, class_voxels=voxels,
                               label_names={1: "organ", 2: "lesion"})

    fp = Fingerprint(cases=[case("a", 1000, 0, (2.0, 1.0, 1.0)), case("b", 4000, 500, (1.0, 1.0, 1.0))],
                     modality="CT", modalities={"CT": 2}, median_spacing=(1.0, 1.0, 1.0),
                     median_shape_after_crop=(10.0, 10.0, 10.0), foreground_intensity=None,
                     label_names={1: "organ", 2: "lesion"})
    vols = training_volumes(fp)
    assert vols["organ"] == VolumeRange(cases=2, min_ml=2.0, median_ml=3.0, max_ml=4.0)  # 1000 x 2 mm³, 4000 x 1
    assert (vols["lesion"].min_ml, vols["lesion"].max_ml) == (0.0, 0.5)  # a case without lesion counts 0 ml
    assert (vols[FOREGROUND].min_ml, vols[FOREGROUND].max_ml) == (2.0, 4.5)
    assert training_volumes(fp, ["b"])["organ"].cases == 1
    label = np.zeros((4, 5, 5), np.uint8)
    label[0, :2, :2] = 1
    label[1, 0, 0] = 2
    assert label_volumes_ml(label, (2.0, 1.0, 1.0), {1: "organ", 2: "lesion"}) == {
        "organ": 0.008, "lesion": 0.002, FOREGROUND: 0.01}


def test_a_confidence_threshold_off_the_histogram_bins_is_refused() -> None:
    with pytest.raises(ValidationError, match=r"0.72 is not a multiple of 0.05 .* use e.g. 0.70"):
        QAConfig(low_confidence_below=0.72)
    assert QAConfig(low_confidence_below=0.6).low_confidence_below == 0.6
