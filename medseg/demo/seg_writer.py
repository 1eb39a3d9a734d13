"""Write a ground-truth label map as a BINARY DICOM SEG (highdicom) referencing its CT slices."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import highdicom as hd
import numpy as np
from numpy.typing import NDArray
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.uid import generate_uid
from pydicom.valuerep import DA, TM

from medseg.demo.dicom_series import MANUFACTURER, MODEL_NAME, UID_PREFIX, file_stem

SOFTWARE_VERSION = "medseg-demo-1"

#: (category, type) codes per known label name; unknown names fall back to "Tissue".
_CODES: dict[str, tuple[hd.sr.CodedConcept, hd.sr.CodedConcept]] = {
    "organ": (
        hd.sr.CodedConcept.from_code(codes.SCT.AnatomicalStructure),
        hd.sr.CodedConcept.from_code(codes.SCT.Organ),
    ),
    "lesion": (
        hd.sr.CodedConcept.from_code(codes.SCT.MorphologicallyAbnormalStructure),
        hd.sr.CodedConcept.from_code(codes.SCT.Lesion),
    ),
}
_FALLBACK = (hd.sr.CodedConcept.from_code(codes.SCT.Tissue), hd.sr.CodedConcept.from_code(codes.SCT.Tissue))


def segment_descriptions(label_names: Mapping[int, str]) -> list[hd.seg.SegmentDescription]:
    """One MANUAL segment description per label value ``1..max(label_names)`` (numbers must be contiguous)."""
    numbers = sorted(label_names)
    if numbers != list(range(1, len(numbers) + 1)):
        raise ValueError(f"segment_descriptions: label values must be 1..N without gaps, got {numbers}")
    out = []
    for number in numbers:
        name = label_names[number]
        category, prop_type = _CODES.get(name.lower(), _FALLBACK)
        out.append(
            hd.seg.SegmentDescription(
                segment_number=number,
                segment_label=name,
                segmented_property_category=category,
                segmented_property_type=prop_type,
                algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL,
            )
        )
    return out


def build_seg(
    source_images: Sequence[Dataset],
    label: NDArray[np.uint8],
    label_names: Mapping[int, str],
    series_instance_uid: str,
    sop_instance_uid: str,
    content_date: str,
    content_time: str,
) -> hd.seg.Segmentation:
    """Build a BINARY SEG with one segment per label value.

    Args:
        source_images: The CT slice datasets, ``source_images[k]`` matching ``label[k]``.
        label: ``(Z, Y, X)`` uint8 label map (0 background, values in ``label_names``) on the image grid.
        label_names: Label value -> name, e.g. ``{1: "organ", 2: "lesion"}``.
        series_instance_uid: UID of the new SEG series.
        sop_instance_uid: UID of the SEG instance.
        content_date: YYYYMMDD written as content/series/instance-creation date (fixed for determinism).
        content_time: HHMMSS written likewise.

    Returns:
        The in-memory segmentation (empty frames omitted).
    """
    if label.ndim != 3 or label.shape[0] != len(source_images):
        raise ValueError(
            f"build_seg: label shape {label.shape} must be (Z, Y, X) with Z = {len(source_images)} images"
        )
    first = source_images[0]
    if label.shape[1:] != (int(first.Rows), int(first.Columns)):
        raise ValueError(
            f"build_seg: label in-plane shape {label.shape[1:]} != image ({first.Rows}, {first.Columns})"
        )
    unknown = sorted(set(np.unique(label).tolist()) - {0, *label_names})
    if unknown:
        raise ValueError(f"build_seg: label values {unknown} have no name in label_names={dict(label_names)}")
    seg = hd.seg.Segmentation(
        source_images=list(source_images),
        pixel_array=np.ascontiguousarray(label, dtype=np.uint8),
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=segment_descriptions(label_names),
        series_instance_uid=series_instance_uid,
        series_number=100,
        sop_instance_uid=sop_instance_uid,
        instance_number=1,
        manufacturer=MANUFACTURER,
        manufacturer_model_name=MODEL_NAME,
        software_versions=SOFTWARE_VERSION,
        device_serial_number="0",
        content_description="Ground truth",
        content_label="GROUND_TRUTH",
        series_description="Ground truth segmentation",
        content_date=content_date,
        content_time=content_time,
        series_date=content_date,
        series_time=content_time,
    )
    _make_deterministic(seg, content_date, content_time)
    return seg


def _make_deterministic(seg: hd.seg.Segmentation, date: str, time: str) -> None:
    """Replace the wall-clock stamps and random UIDs highdicom adds, so equal inputs give equal bytes."""
    seg.InstanceCreationDate = DA(date)
    seg.InstanceCreationTime = TM(time)
    for item in seg.get("ContributingEquipmentSequence", []):
        if "ContributionDateTime" in item:
            item.ContributionDateTime = f"{date}{time}"
    dim_uid = generate_uid(
        prefix=UID_PREFIX, entropy_srcs=[str(seg.SOPInstanceUID), "dimension-organization"]
    )
    for keyword in ("DimensionOrganizationSequence", "DimensionIndexSequence"):
        for item in seg.get(keyword, []):
            if "DimensionOrganizationUID" in item:
                item.DimensionOrganizationUID = dim_uid


def write_seg(seg: hd.seg.Segmentation, folder: Path) -> Path:
    """Save ``seg`` as ``folder/<sha1(SOPInstanceUID)>.dcm`` and return the path."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{file_stem(str(seg.SOPInstanceUID))}.dcm"
    seg.save_as(path, enforce_file_format=True)
    return path
