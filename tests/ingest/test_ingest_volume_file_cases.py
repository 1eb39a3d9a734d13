"""NIfTI/NRRD files paired into cases from their headers (medseg.ingest.volume_file_cases): label file
names, the image each label file labels, and what is reported when it cannot be used.

Whole ingests of such files (MSD / nnU-Net datasets, pyradiomics, ivadomed, ITK-SNAP) are tested in
tests/io/test_volume_files.py."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from medseg.deid import keyed_hash
from medseg.geometry import Geometry
from medseg.ingest.build import LabelSource
from medseg.ingest.headers import read_header
from medseg.ingest.volume_file_cases import label_kind, plan_volume_files, read_itksnap_labels
from medseg.io.nifti import write_nifti
from medseg.workspace import Workspace

KEY = "volume-file-cases-secret"


def test_label_file_names_are_recognised() -> None:
    assert label_kind("brain1_label") == ("brain1", "label", 1)
    assert label_kind("MRIcrop-seg") == ("MRIcrop", "seg", 0)
    assert label_kind("sub-unf01_T2w_seg-manual") == ("sub-unf01_T2w", "seg", 0)
    assert label_kind("sub-unf01_T2w_labels-disc-manual") == ("sub-unf01_T2w", "labels-disc", 1)
    assert label_kind("sub-unf01_T2w_lesion-manual") == ("sub-unf01_T2w", "lesion", 4)
    assert label_kind("brain1_image") is None and label_kind("sub-unf01_T2w") is None


def test_standalone_label_files_pair_with_their_image_or_are_reported(tmp_path: Path) -> None:
    src = tmp_path / "src"
    grid = Geometry.create((2.0, 0.8, 0.7), (10.0, -5.0, 3.0))
    image = np.arange(4 * 6 * 5, dtype=np.int16).reshape(4, 6, 5)
    label = (image % 3 == 0).astype(np.uint8)
    write_nifti(src / "p1" / "liver_image.nii.gz", image, grid)
    write_nifti(src / "p1" / "liver_seg.nii.gz", label, grid)  # seg beats mask
    write_nifti(src / "p1" / "liver_mask.nii.gz", label, grid)
    (src / "p1" / "liver_seg.label").write_text(
        '    0     0    0    0        0  0  0    "Clear Label"\n    1   255    0    0        1  1  1    "liver"\n'
    )
    write_nifti(src / "p2" / "kidney.nii.gz", image, grid)
    write_nifti(src / "p2" / "kidney_label.nii.gz", label[:, :, :4], grid)  # not on the image grid
    write_nifti(src / "lonely_seg.nii.gz", label, grid)  # no image file named "lonely"
    headers = [read_header(p, KEY) for p in sorted(src.rglob("*.nii.gz"))]

    plan = plan_volume_files(headers, Workspace.at(tmp_path / "ws"), KEY, [str(src)])

    jobs = {stack.info["description"]: job for job, stack in plan.cases}
    assert sorted(jobs) == ["kidney", "liver_image"]
    liver = jobs["liver_image"]
    assert liver.case_id == keyed_hash(KEY, "file:src/p1/liver_image.nii.gz", prefix="case_")
    assert liver.image_file == str(src / "p1" / "liver_image.nii.gz") and liver.file_shape == (4, 6, 5)
    assert liver.labels == [LabelSource(kind="file", series_uid="file:src/p1/liver_seg.nii.gz",
                                        path=str(src / "p1" / "liver_seg.nii.gz"), description="foreground",
                                        names=((1, "liver"),))]
    assert jobs["kidney"].labels == []
    reasons = {Path(q["path"]).name: q["reason"] for q in plan.quarantine}
    assert reasons == {"liver_mask.nii.gz": "label_ambiguous", "kidney_label.nii.gz": "label_mismatch",
                       "lonely_seg.nii.gz": "label_unmatched"}
    assert [(Path(o.path).name, o.shape, o.source.description) for o in plan.orphans] == [
        ("lonely_seg.nii.gz", (4, 6, 5), "lonely")
    ]  # offered to a DICOM series on its grid
    rows = {r["description"]: r["status"] for r in plan.series_rows}
    assert rows == {"liver_seg": "label_source", "liver_mask": "quarantined", "kidney_label": "quarantined",
                    "lonely_seg": "quarantined"}


def test_itksnap_label_descriptions_skip_the_clear_label(tmp_path: Path) -> None:
    path = tmp_path / "x.label"
    path.write_text(
        "################################################\n"
        '    0     0    0    0        0  0  0    "Clear Label"\n'
        '    1   255    0    0        1  1  1    "vent-lat"\n'
        '    7     0  255    0        1  1  1    "  "\n'
    )
    assert read_itksnap_labels(path) == {1: "vent-lat", 7: "label_7"}
    assert read_itksnap_labels(tmp_path / "missing.label") == {}
