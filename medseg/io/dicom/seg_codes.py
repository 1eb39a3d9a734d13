"""What each segment of a medseg prediction SEG says: its coded property and its algorithm name.

One place for the writer (:mod:`medseg.io.dicom.seg_writer`) and the checker
(:mod:`medseg.io.dicom.seg_check`), so the checker compares a written SEG with the same mapping
from label names to SNOMED CT codes that the writer used.
"""

from __future__ import annotations

from typing import Any

from pydicom.sr.codedict import codes

#: label name (lower case) -> (SegmentedPropertyCategory, SegmentedPropertyType)
_CODES: dict[str, tuple[Any, Any]] = {
    "organ": (codes.SCT.AnatomicalStructure, codes.SCT.Organ),
    "lesion": (codes.SCT.MorphologicallyAbnormalStructure, codes.SCT.Lesion),
    "tumor": (codes.SCT.MorphologicallyAbnormalStructure, codes.SCT.Neoplasm),
    "spleen": (codes.SCT.AnatomicalStructure, codes.SCT.Spleen),
    "liver": (codes.SCT.AnatomicalStructure, codes.SCT.Liver),
}
_FALLBACK = (codes.SCT.Tissue, codes.SCT.Tissue)


def segment_codes(label_name: str) -> tuple[Any, Any]:
    """``(category, type)`` pydicom Codes of a class named ``label_name`` (unknown names: Tissue/Tissue)."""
    return _CODES.get(label_name.lower(), _FALLBACK)


def algorithm_name(family: str) -> str:
    """AlgorithmName recorded in every segment of a SEG made by the model family ``family``."""
    return f"medseg-{family}"


def segment_label(label_name: str) -> str:
    """SegmentLabel of the class ``label_name`` (DICOM LO: at most 64 characters)."""
    return label_name[:64]
