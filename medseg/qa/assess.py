"""Assess predictions for QA: every case of one or more models' prediction folders, or one case in memory.

No ground truth is read: the signals (:mod:`medseg.qa.signals`) compare each prediction with the
training label volumes (from the workspace's dataset fingerprint), with the model's own confidence
(recorded at inference) and with the other models' predictions of the same case.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from pathlib import Path

from medseg.config import QAConfig
from medseg.preprocess.fingerprint import Fingerprint
from medseg.qa.confidence import Confidence
from medseg.qa.measure import measure_case
from medseg.qa.record import CaseQA, QAReport, ranked
from medseg.qa.signals import case_qa, case_signals, unreadable_signal
from medseg.qa.volumes import VolumeRange, training_volumes
from medseg.workspace import Workspace


def workspace_training_volumes(ws: Workspace) -> tuple[dict[str, VolumeRange], list[str]]:
    """The label volume ranges of the workspace's labeled cases (its fingerprint), and notes when there are none.

    Every fingerprinted case counts (the labeled data the models were trained and tested on).
    """
    if not ws.fingerprint_path.is_file():
        return {}, [f"no dataset fingerprint at {ws.fingerprint_path} (run `medseg preprocess`): "
                    "predicted volumes are not compared with training label volumes"]
    volumes = training_volumes(Fingerprint.load(ws.fingerprint_path))
    return volumes, [] if volumes else [f"the fingerprint {ws.fingerprint_path} has no labeled case: no volume check"]


def stores_by_case(predictions: Mapping[str, str | Path], cases: Collection[str] | None = None
                   ) -> dict[str, dict[str, Path]]:
    """``{case_id: {model: <case_id>.zarr}}`` over the prediction folders (only ``cases`` when given)."""
    found: dict[str, dict[str, Path]] = {}
    wanted = set(cases) if cases is not None else None
    for model, folder in predictions.items():
        for store in sorted(Path(folder).glob("*.zarr")):
            case_id = store.name.removesuffix(".zarr")
            if wanted is None or case_id in wanted:
                found.setdefault(case_id, {})[model] = store
    return dict(sorted(found.items()))


def assess_predictions(
    predictions: Mapping[str, str | Path],
    training: Mapping[str, VolumeRange],
    cfg: QAConfig,
    run_id: str,
    cases: Collection[str] | None = None,
    notes: list[str] | None = None,
) -> QAReport:
    """Score every predicted case of ``predictions`` (``{model name: prediction folder}``) and rank them.

    Args:
        predictions: the models' prediction folders (``predictions/<family>/<version>``).
        training: ``{class name: range}`` of the training label volumes (empty: no volume signals).
        cfg: the thresholds.
        run_id: recorded in the report.
        cases: only these case ids (None: every prediction store in the folders).
        notes: what could not be measured (e.g. no fingerprint), carried into the report.
    """
    records: list[CaseQA] = []
    unrecorded: dict[str, int] = {}
    for case_id, stores in stores_by_case(predictions, cases).items():
        measured = measure_case(stores)
        signals = case_signals(measured.volumes, measured.confidences, measured.agreements, training, cfg)
        signals += [unreadable_signal(model, error) for model, error in measured.errors.items()]
        records.append(case_qa(case_id, signals, measured.volumes))
        for model, rec in measured.confidences.items():
            if rec is None:
                unrecorded[model] = unrecorded.get(model, 0) + 1
    all_notes = list(notes or [])
    all_notes += [f"{model}: {n} prediction(s) carry no confidence record (predicted before medseg recorded it): "
                  "no confidence signal for them" for model, n in sorted(unrecorded.items())]
    if len(predictions) < 2:
        all_notes.append("one model only: no model-vs-model agreement")
    return QAReport(run_id=run_id, models={k: str(v) for k, v in predictions.items()},
                    thresholds=cfg.model_dump(mode="json"), training_volumes=dict(training), notes=all_notes,
                    cases=ranked(records))


def assess_measured(
    case_id: str,
    model: str,
    volumes_ml: Mapping[str, float],
    confidence: Confidence | None,
    training: Mapping[str, VolumeRange],
    cfg: QAConfig,
) -> CaseQA:
    """QA of one prediction measured as it was written (``medseg predict``): its volumes and confidence.

    Args:
        volumes_ml: ``{class name: ml}`` with ``"foreground"`` (:func:`medseg.qa.volumes.label_volumes_ml`).
        confidence: recorded at inference (None: no confidence signal).
    """
    volumes = {model: dict(volumes_ml)}
    return case_qa(case_id, case_signals(volumes, {model: confidence}, {}, training, cfg), volumes)
