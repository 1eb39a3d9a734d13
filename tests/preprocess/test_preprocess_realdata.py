"""Preprocessing of real labeled scans (pyradiomics brain MR NRRD, MSD spleen CT NIfTI)."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import nrrd
import numpy as np
import pytest

from medseg.config import MedsegConfig
from medseg.geometry import Geometry
from medseg.io.volume_store import CaseVolume, read_case, write_case
from medseg.plan import Normalization, Plan
from medseg.preprocess.case import preprocess_image, preprocess_labels, restore_labels_to_native
from medseg.preprocess.run import run_preprocess
from medseg.workspace import Workspace

pytestmark = pytest.mark.realdata


def _nrrd_case(real: Path, name: str) -> CaseVolume:
    img, hdr = nrrd.read(str(real / "pyradiomics" / f"{name}_image.nrrd"))
    lab, _ = nrrd.read(str(real / "pyradiomics" / f"{name}_label.nrrd"))
    assert hdr["space"] == "left-posterior-superior"
    dirs = np.asarray(hdr["space directions"], dtype=float)  # row a = LPS step of NRRD axis a (x, y, z)
    steps = dirs[[2, 1, 0]]  # array axes (z, y, x) after the transpose
    spacing = np.linalg.norm(steps, axis=1)
    return CaseVolume(
        case_id=name,
        image=np.ascontiguousarray(img.transpose(2, 1, 0)),
        geometry=Geometry.create(spacing, hdr["space origin"], (steps / spacing[:, None]).T),
        labels={"gt": np.ascontiguousarray(lab.transpose(2, 1, 0)).astype(np.uint8)},
        label_names={1: "tumor"},
        source={"modality": "MR"},
    )


def test_brain_mr_is_planned_anisotropic_and_restores(real_data: Path, tmp_path: Path) -> None:
    ws = Workspace.at(tmp_path / "ws").ensure()
    cases = [_nrrd_case(real_data, n) for n in ("brain1", "brain2")]
    for c in cases:
        write_case(ws.volume_path(c.case_id), c)
    cfg = MedsegConfig.model_validate({"train": {"filters": [8, 16, 32, 64, 128]}})
    summary = run_preprocess(ws, cfg, None)
    assert summary.cases_processed == 2 and summary.failed == []
    plan = Plan.load(ws.plan_path)
    assert plan.normalization == Normalization.ZSCORE
    assert plan.target_spacing == pytest.approx((6.5, 0.78125, 0.78125))
    assert plan.anisotropic_axis == 0
    assert plan.kernel_sizes[0] == [1, 3, 3] and plan.strides[1] == [1, 2, 2]
    assert int(np.prod(plan.patch_size)) <= cfg.preprocess.max_patch_voxels
    pre_case = read_case(ws.preprocessed_case_path("brain1"))
    assert set(np.unique(pre_case.labels["gt"])) == {0, 1}

    # resampled to a coarser in-plane / finer through-plane grid and back: the tumour survives
    plan2 = plan.model_copy(update={"target_spacing": (3.25, 1.0, 1.0)})
    c = cases[0]
    pre = preprocess_image(c.image, c.geometry, plan2)
    assert pre.anisotropic_axis == 0  # native spacing 6.5 / 0.78 > 3: separate z
    restored = restore_labels_to_native(preprocess_labels(c.labels["gt"], pre), pre)
    gt = c.labels["gt"] > 0
    dice = 2 * (gt & (restored > 0)).sum() / (gt.sum() + (restored > 0).sum())
    assert dice > 0.9


def test_spleen_ct_uses_ct_normalisation(real_data: Path, tmp_path: Path) -> None:
    root = real_data / "ivadomed-data-testing" / "ct_scan"
    img = nib.load(str(root / "sub-spleen2" / "ct" / "sub-spleen2_ct.nii.gz"))
    seg = nib.load(
        str(root / "derivatives" / "labels" / "sub-spleen2" / "ct" / "sub-spleen2_ct_seg-manual.nii.gz")
    )
    assert isinstance(img, nib.Nifti1Image) and isinstance(seg, nib.Nifti1Image)
    image = np.asarray(img.dataobj).transpose(2, 1, 0).astype(np.int16)
    gt = (np.asarray(seg.dataobj).transpose(2, 1, 0) > 0.5).astype(np.uint8)
    ws = Workspace.at(tmp_path / "ws").ensure()
    write_case(
        ws.volume_path("spleen2"),
        CaseVolume(
            case_id="spleen2",
            image=image,
            geometry=Geometry.from_nifti_affine(img.affine),
            labels={"gt": gt},
            label_names={1: "spleen"},
            source={"modality": "CT"},
        ),
    )
    summary = run_preprocess(ws, MedsegConfig(), None)
    assert summary.cases_processed == 1
    plan = Plan.load(ws.plan_path)
    assert plan.normalization == Normalization.CT and plan.clip_range is not None
    lo, hi = plan.clip_range
    assert -200 < lo < 60 < hi < 400  # spleen soft tissue HU
    pre = read_case(ws.preprocessed_case_path("spleen2"))
    spleen = pre.image[pre.labels["gt"] == 1]
    assert abs(float(spleen.mean())) < 0.5
