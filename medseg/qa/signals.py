"""The QA signals of one case and its score: pure functions of measured numbers and the ``qa`` config.

* **volume** (per model, per class and for the whole foreground): the predicted volume against the
  training label volumes. Score ``volume / (volume_factor x training max)`` above the range and
  ``(training min / volume_factor) / volume`` below it; an empty mask where every training case has
  some, or a class the training labels never had, scores :data:`~medseg.qa.record.MAX_SCORE`.
* **confidence** (per model): the share of predicted-foreground voxels whose winning probability is
  below ``low_confidence_below``, over ``low_confidence_share``.
* **agreement** (per pair of models): ``(1 - Dice) / (1 - min_model_dice)`` of their foreground-mean Dice.

A score of 1.0 is the threshold: a case is flagged when any signal reaches it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from medseg.config import QAConfig
from medseg.qa.confidence import Confidence
from medseg.qa.record import MAX_SCORE, CaseQA, Signal, SignalKind
from medseg.qa.volumes import FOREGROUND, VolumeRange


def _capped(score: float) -> float:
    return round(min(MAX_SCORE, max(0.0, score)), 4)


def _ml(value: float) -> str:
    return f"{value:.3g}"


def volume_signal(model: str, subject: str, ml: float, train: VolumeRange, cfg: QAConfig) -> Signal:
    """Score a predicted volume ``ml`` of class ``subject`` (or :data:`FOREGROUND`) against ``train``."""
    f = cfg.volume_factor
    what = "mask" if subject == FOREGROUND else f"{subject} mask"
    high = ml / (f * train.max_ml) if train.max_ml > 0 else (math.inf if ml > 0 else 0.0)
    low = (train.min_ml / f) / ml if ml > 0 else (math.inf if train.min_ml > 0 else 0.0)
    if high >= low:
        if train.max_ml > 0:
            reason = f"{model}: {what} volume {_ml(ml)} ml > {f:g}x training max {_ml(train.max_ml)} ml"
        else:
            reason = f"{model}: {what} of {_ml(ml)} ml, a class no training case has"
        score = high
    elif ml > 0:
        reason = f"{model}: {what} volume {_ml(ml)} ml < training min {_ml(train.min_ml)} ml / {f:g}"
        score = low
    else:
        reason = f"{model}: empty {what} (every training case has >= {_ml(train.min_ml)} ml)"
        score = low
    return Signal(kind=SignalKind.VOLUME, model=model, subject=subject, value=ml, score=_capped(score), reason=reason)


def confidence_signal(model: str, record: Confidence, cfg: QAConfig) -> Signal:
    """Score the share of ``model``'s predicted foreground with a winning probability below the threshold."""
    share = record.share_below(cfg.low_confidence_below)
    reason = (f"{model}: low confidence (< {cfg.low_confidence_below:g}) on {share:.0%} of "
              f"{record.foreground_voxels} foreground voxels")
    return Signal(kind=SignalKind.CONFIDENCE, model=model, value=round(share, 4),
                  score=_capped(share / cfg.low_confidence_share), reason=reason)


def agreement_signal(model_a: str, model_b: str, dice: float, cfg: QAConfig) -> Signal:
    """Score the foreground-mean Dice between two models' predictions of one case."""
    return Signal(kind=SignalKind.AGREEMENT, model=f"{model_a} vs {model_b}", value=round(dice, 4),
                  score=_capped((1.0 - dice) / (1.0 - cfg.min_model_dice)),
                  reason=f"{model_a} vs {model_b} Dice {dice:.2f} (< {cfg.min_model_dice:g} flags)")


def unreadable_signal(model: str, error: str) -> Signal:
    """A prediction that could not be read: always flagged, at the top."""
    return Signal(kind=SignalKind.UNREADABLE, model=model, value=0.0, score=MAX_SCORE,
                  reason=f"{model}: prediction could not be read ({error})")


def case_signals(
    volumes: Mapping[str, Mapping[str, float]],
    confidences: Mapping[str, Confidence | None],
    agreements: Mapping[tuple[str, str], float],
    training: Mapping[str, VolumeRange],
    cfg: QAConfig,
) -> list[Signal]:
    """Every signal of one case.

    Args:
        volumes: ``{model: {class name: ml}}`` (with :data:`FOREGROUND`).
        confidences: ``{model: record}``; None = not recorded (older predictions): no confidence signal.
        agreements: ``{(model a, model b): foreground-mean Dice}``; NaN (both empty) gives no signal.
        training: ``{class name: range}``; a class without a range gets no volume signal (nor does the whole
            foreground of a one-class model: it is that class).
        cfg: thresholds.
    """
    signals = [volume_signal(m, name, ml, training[name], cfg)
               for m, per_class in volumes.items() for name, ml in per_class.items()
               if name in training and not (name == FOREGROUND and len(per_class) <= 2)]  # 1 class: it is the fg
    signals += [confidence_signal(m, rec, cfg) for m, rec in confidences.items() if rec is not None]
    signals += [agreement_signal(a, b, d, cfg) for (a, b), d in agreements.items() if not math.isnan(d)]
    return signals


def case_qa(case_id: str, signals: list[Signal], volumes: Mapping[str, Mapping[str, float]]) -> CaseQA:
    """The case record: signals highest first, its score, whether it is flagged and the reasons."""
    ordered = sorted(signals, key=lambda s: -s.score)
    score = ordered[0].score if ordered else 0.0
    return CaseQA(case_id=case_id, score=score, flagged=score >= 1.0,
                  reasons=[s.reason for s in ordered if s.flagged], signals=ordered,
                  volumes_ml={m: {k: round(v, 4) for k, v in per.items()} for m, per in volumes.items()})
