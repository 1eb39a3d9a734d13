"""Label *image series*: a mask stored as ordinary images (e.g. TCIA ``MaskTumor``, Secondary Capture).

Such a series is recognised by its SeriesDescription (mask/label/seg/roi) on a DERIVED or Secondary
Capture series, *and* by its content (small non-negative integers, checked when the volume is
built), and linked as the label of the image series of the same study that has the
same grid (shape, spacing, origin, direction). When several image series share that grid (e.g.
T1post plus FLAIR/T2 registered to it), the one not marked as registered/derived and with the lowest
SeriesNumber is chosen (T1post in the TCIA Brain-Tumor-Progression collection).
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
from numpy.typing import NDArray

from medseg.geometry import Geometry
from medseg.ingest.stacks import Stack
from medseg.io.reasons import IngestError, Reason
from medseg.io.volume_files import is_label_map

MASK_DESCRIPTION = re.compile(r"mask|label|segment|(^|[^a-z])(seg|roi)([^a-z]|$)", re.IGNORECASE)
_REGISTERED = re.compile(r"(^|[^a-z])reg(istered)?([^a-z]|$)|_reg", re.IGNORECASE)
_SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"  # SC image storage family (.7, .7.1 - .7.4)
MAX_LABEL_VALUES = 32
ORIGIN_ATOL = 0.05  # mm
DIRECTION_ATOL = 1e-3


def is_mask_candidate(stack: Stack) -> bool:
    """True for a derived/secondary-capture series whose description names a mask/label/segmentation.

    An ORIGINAL acquisition is never taken for a mask, whatever its description says.
    """
    if not MASK_DESCRIPTION.search(str(stack.info.get("description") or "")):
        return False
    image_type = [str(t).upper() for t in (stack.info.get("image_type") or [])]
    secondary = str(stack.info.get("sop_class") or "").startswith(_SECONDARY_CAPTURE)
    return secondary or (bool(image_type) and image_type[0] == "DERIVED")


def same_grid(a: Geometry, shape_a: tuple[int, ...], b: Geometry, shape_b: tuple[int, ...]) -> bool:
    """Same voxel grid: equal shapes, spacing (0.1 %), origin (0.05 mm) and direction."""
    return (
        tuple(shape_a) == tuple(shape_b)
        and np.allclose(a.spacing, b.spacing, rtol=1e-3)
        and np.allclose(a.origin, b.origin, atol=ORIGIN_ATOL)
        and np.allclose(a.direction_matrix, b.direction_matrix, atol=DIRECTION_ATOL)
    )


def pick_target(mask: Stack, images: list[Stack]) -> Stack | None:
    """The image stack a mask stack labels (same study, same grid), or None."""
    assert mask.geometry is not None
    matches = [
        s
        for s in images
        if s.geometry is not None
        and s.info.get("study_key") == mask.info.get("study_key")
        and same_grid(s.geometry, s.shape, mask.geometry, mask.shape)
    ]

    def rank(s: Stack) -> tuple[Any, ...]:
        desc = str(s.info.get("description") or "")
        derived = "DERIVED" in [str(t).upper() for t in (s.info.get("image_type") or [])[:1]]
        num = s.info.get("series_number")
        return (bool(_REGISTERED.search(desc)), derived, num if num is not None else 1 << 30, s.series_uid)

    return min(matches, key=rank) if matches else None


def label_name(description: str) -> str:
    """``"Mask_Tumor"`` → ``"tumor"``; ``"MASK"`` → ``"foreground"``."""
    core = re.sub(r"mask|label(map)?|segmentation|seg|roi", " ", description, flags=re.IGNORECASE)
    words = re.findall(r"[A-Za-z0-9]+", core)
    return "_".join(w.lower() for w in words) or "foreground"


def mask_to_label(volume: NDArray[Any], description: str, where: str) -> tuple[NDArray[np.uint8], dict[int, str]]:
    """Convert a mask image volume into a uint8 label volume and its names.

    Binary masks (one non-zero value, e.g. 1 or 255) become 0/1 named from the description;
    multi-valued masks keep their values (``label_<v>``).

    Raises:
        IngestError: ``label_not_mask`` when values are not small non-negative integers.
    """
    values = np.unique(volume)
    if not is_label_map(values, MAX_LABEL_VALUES):
        raise IngestError(
            Reason.LABEL_NOT_MASK,
            f"{where}: described as a mask ({description!r}) but holds "
            f"{len(values)} distinct values in [{values.min()}, "
            f"{values.max()}]; not a label volume",
        )
    nonzero = [int(v) for v in values if v != 0]
    if len(nonzero) <= 1:
        return (volume != 0).astype(np.uint8), {1: label_name(description)}
    return volume.astype(np.uint8), {v: f"label_{v}" for v in nonzero}
