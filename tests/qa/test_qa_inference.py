"""The confidence record inference writes with each prediction, and the QA of an unsure model."""

from __future__ import annotations

import numpy as np
import phantom_data as phantom
import pytest
import torch
from qa_cases import CASES, NATIVE_SPACING, SHAPE, BrightIsOrgan, QAWorkspace, oracle_bundle

from medseg.config import InferConfig
from medseg.geometry import Geometry
from medseg.inference.predict import predict_volume
from medseg.inference.stream import logits_volume
from medseg.preprocess.case import preprocess_image
from medseg.qa.confidence import BINS, ConfidenceTally, read_confidence
from medseg.qa.record import QAReport, SignalKind
from medseg.stages.qa import run_qa_stage


def test_the_streamed_record_equals_the_softmax_of_the_whole_preprocessed_volume() -> None:
    hu, _ = phantom.phantom_hu(SHAPE, 7, NATIVE_SPACING)
    image = np.round(hu).astype(np.int16)
    geometry = Geometry.create(NATIVE_SPACING, (0.0, 0.0, 0.0))
    bundle = oracle_bundle("cnn", BrightIsOrgan(sharpness=2.0))  # a margin that leaves some voxels unsure
    cfg = InferConfig(overlap=0.0)
    tally = ConfidenceTally(probabilities=False)
    predict_volume(bundle, image, geometry, cfg, "cpu", confidence=tally)
    pre = preprocess_image(image, geometry, bundle.plan)
    probs = torch.from_numpy(logits_volume(bundle.network, pre.data, bundle.plan, cfg)).softmax(dim=0).numpy()
    fg = probs.argmax(axis=0) != 0
    rec = tally.result()
    assert rec.foreground_voxels == int(fg.sum()) > 0
    assert rec.histogram == np.histogram(probs.max(axis=0)[fg], bins=BINS, range=(0, 1))[0].tolist()
    assert 0.0 < rec.share_below(0.75) < 1.0


def test_each_prediction_store_carries_its_confidence(qa_workspace: QAWorkspace) -> None:
    for case_id in CASES:
        rec = read_confidence(qa_workspace.ws.prediction_dir("cnn", "v1") / f"{case_id}.zarr")
        assert rec is not None and rec.foreground_voxels > 0
        assert rec.share_below(0.75) < 0.2  # the oracle is sure of almost all of its organ


@pytest.mark.parametrize("mirror_tta", [False, True])
def test_an_unsure_model_is_flagged_for_low_confidence(qa_workspace: QAWorkspace, mirror_tta: bool) -> None:
    cfg = qa_workspace.cfg
    qa_workspace.cfg = cfg.model_copy(update={"infer": cfg.infer.model_copy(update={"mirror_tta": mirror_tta})})
    folder = qa_workspace.predict("gan", BrightIsOrgan(sharpness=0.5), cases=CASES[:2])  # p(organ) ~ 0.58
    report_cnn = run_qa_stage(cfg, {"cnn": qa_workspace.ws.prediction_dir("cnn", "v1")}, "sure").stats
    assert report_cnn["flagged"] == 0
    outcome = run_qa_stage(cfg, {"gan": folder}, "unsure")
    assert outcome.stats["flagged"] == 2
    report = QAReport.load(qa_workspace.ws.reports_dir / "unsure" / "qa.json")
    for case in report.cases:
        assert case.flagged and case.signals[0].kind == SignalKind.CONFIDENCE
        assert case.reasons[0].startswith("gan: low confidence (< 0.75) on 100% of")
