"""Where one case's prediction is written, and what was written.

Two layouts use the same writer (:func:`medseg.inference.predict.write_case_prediction`):

* the workspace layout of ``medseg infer`` (:meth:`CaseOutputs.in_folder`):
  ``<folder>/<case_id>.nii.gz``, ``<folder>/dicom-seg/<study_key>/<case_id>/seg.dcm``,
  ``<folder>/<case_id>.zarr`` (written last: the "case done" marker of the folder);
* the layout of ``medseg predict`` (:mod:`medseg.inference.predict_inputs`): files named after the
  study in the output folder, only the formats asked for.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from medseg.qa.confidence import Confidence


@dataclass(frozen=True)
class CaseOutputs:
    """The files one case's prediction goes to; a None path (or ``dicom_seg=False``) is not written.

    Attributes:
        folder: where a large case's temporary preprocessed image spills; root of the workspace
            layout's ``dicom-seg/`` folder when ``seg_file`` is None.
        nifti: label map with the source affine.
        zarr: OME-Zarr prediction store (source image + ``labels/pred``), written last.
        dicom_seg: write a DICOM SEG (DICOM sources only; otherwise skipped with a reason).
        seg_file: the SEG's path; None: ``folder/dicom-seg/<study_key>/<case_id>/seg.dcm``.
    """

    folder: Path
    nifti: Path | None
    zarr: Path | None
    dicom_seg: bool
    seg_file: Path | None = None

    @classmethod
    def in_folder(cls, folder: Path, case_id: str, dicom_seg: bool) -> CaseOutputs:
        """The workspace layout of ``predictions/<family>/<version>/`` (every output)."""
        return cls(folder, folder / f"{case_id}.nii.gz", folder / f"{case_id}.zarr", dicom_seg)


@dataclass(frozen=True)
class CaseWritten:
    """What :func:`medseg.inference.predict.write_case_prediction` wrote for one case.

    Attributes:
        files: every file or store written, in writing order.
        seg_file: the DICOM SEG, or None.
        seg_note: the SEG's path, or why there is none (``"skipped: ..."``, ``"not requested"``).
        confidence: the winning probability of the predicted foreground (QA, :mod:`medseg.qa.confidence`).
        volumes_ml: ``{class name: ml}`` of the label map, with ``"foreground"`` (:mod:`medseg.qa.volumes`).
    """

    files: list[Path]
    seg_file: Path | None
    seg_note: str
    confidence: Confidence | None = None
    volumes_ml: dict[str, float] = field(default_factory=dict)
