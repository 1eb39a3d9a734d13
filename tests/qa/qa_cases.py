"""QA test data: a workspace of phantom CT cases (native stores with ground truth, a fingerprint) predicted by
oracle "models" (fixed networks that segment bright tissue), so that every good prediction is right by
construction and a test can break one on purpose."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import phantom_data as phantom
import torch

from medseg.config import MedsegConfig
from medseg.geometry import Geometry
from medseg.inference.predict import predict_case
from medseg.io.case_arrays import PRED_LABEL
from medseg.io.volume_store import CaseVolume, read_case, write_case
from medseg.plan import Plan
from medseg.preprocess.fingerprint import compute_fingerprint
from medseg.training.bundle import ModelBundle
from medseg.workspace import Workspace

NATIVE_SPACING = (3.0, 1.2, 1.0)
SHAPE = (24, 60, 70)
LABEL_NAMES = {1: "organ"}
CASES = [f"case{i}" for i in range(5)]


class BrightIsOrgan(torch.nn.Module):
    """Oracle: organ where the normalised intensity is > 0 (HU > 80); ``sharpness`` scales the logit margin."""

    def __init__(self, sharpness: float = 20.0) -> None:
        super().__init__()
        self.sharpness = sharpness

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([torch.zeros_like(x), self.sharpness * x], dim=1)


def organ_plan() -> Plan:
    """The phantom plan with one class, the organ (the oracle cannot see the lesions: they count as organ)."""
    return phantom.make_plan().model_copy(update={"num_classes": 2, "label_names": dict(LABEL_NAMES)})


def oracle_bundle(family: str, network: torch.nn.Module | None = None) -> ModelBundle:
    return ModelBundle(path=Path("."), family=family, version="v1", plan=organ_plan(),
                       network=network or BrightIsOrgan(), metadata={})


@dataclass
class QAWorkspace:
    ws: Workspace
    cfg: MedsegConfig

    def predict(self, family: str, network: torch.nn.Module | None = None,
                cases: list[str] | None = None) -> Path:
        """Predict ``cases`` (default: all) with an oracle into ``predictions/<family>/v1``; returns the folder."""
        out = self.ws.prediction_dir(family, "v1")
        bundle = oracle_bundle(family, network)
        for case_id in cases or CASES:
            predict_case(self.ws, self.cfg, bundle, case_id, out, torch.device("cpu"))
        return out


def write_cases(ws: Workspace) -> None:
    """Native stores ``volumes/case<i>.zarr`` with ``gt`` (organ, lesions included) and the fingerprint."""
    for i, case_id in enumerate(CASES):
        hu, label = phantom.phantom_hu(SHAPE, 40 + i, NATIVE_SPACING)
        write_case(ws.volume_path(case_id), CaseVolume(
            case_id=case_id, image=np.round(hu).astype(np.int16),
            geometry=Geometry.create(NATIVE_SPACING, (0.0, 0.0, 0.0)),
            labels={"gt": (label > 0).astype(np.uint8)}, label_names=dict(LABEL_NAMES), source={"modality": "CT"}))
    compute_fingerprint([ws.volume_path(c) for c in CASES], None).save(ws.fingerprint_path)


def qa_config(ws: Workspace) -> MedsegConfig:
    return MedsegConfig.model_validate({"workspace": str(ws.root), "train": {"device": "cpu", "num_threads": 2},
                                       "infer": {"overlap": 0.0, "dicom_seg": False}})


def replace_prediction(store: Path, label: np.ndarray) -> None:
    """Overwrite the label map of a prediction store (what the model "predicted"), keeping its metadata."""
    case = read_case(store)
    case.labels[PRED_LABEL] = label.astype(np.uint8)
    write_case(store, case)
