"""Manifest of a generated demo archive (``OUT/manifest.json``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict

from medseg.geometry import Geometry

GENERATOR = "medseg.demo"
MANIFEST_NAME = "manifest.json"


class DemoCase(BaseModel):
    """One image series (= one study) of the demo archive with its ground-truth SEG.

    ``shape``/``spacing`` are in array order ``(z, y, x)`` (slices, rows, columns), spacing in mm;
    ``origin``/``direction`` follow :class:`medseg.geometry.Geometry`. Folders/files are relative
    to the archive root, POSIX style.
    """

    model_config = ConfigDict(frozen=True)

    case_id: str
    case_index: int
    patient_id: str
    patient_name: str
    study_index: int
    study_date: str
    study_instance_uid: str
    series_instance_uid: str
    frame_of_reference_uid: str
    seg_series_instance_uid: str
    seg_sop_instance_uid: str
    image_folder: str
    seg_file: str
    n_image_files: int
    shape: tuple[int, int, int]
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]
    direction: tuple[tuple[float, float, float], tuple[float, float, float], tuple[float, float, float]]
    oblique: bool
    oblique_angle_deg: float
    pixel_encoding: str
    lesion_count: int
    label_voxels: dict[int, int]

    def geometry(self) -> Geometry:
        """The :class:`Geometry` of the image volume (and of its SEG)."""
        return Geometry.create(self.spacing, self.origin, [list(r) for r in self.direction])


class DemoManifest(BaseModel):
    """What :func:`medseg.demo.archive.generate_demo_archive` wrote."""

    model_config = ConfigDict(frozen=True)

    generator: Literal["medseg.demo"] = "medseg.demo"
    format_version: int = 1
    seed: int
    n_cases: int
    n_patients: int
    label_names: dict[int, str]
    total_bytes: int
    cases: list[DemoCase]

    def save(self, root: Path) -> Path:
        """Write ``root/manifest.json`` (sorted keys, stable bytes) and return its path."""
        path = root / MANIFEST_NAME
        data = json.loads(self.model_dump_json())
        path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        return path


def load_manifest(root: Path) -> DemoManifest:
    """Read ``root/manifest.json``.

    Raises:
        FileNotFoundError: if there is no manifest.
        pydantic.ValidationError: if it is not a medseg demo manifest.
    """
    path = Path(root) / MANIFEST_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no demo manifest; generate one with `medseg demo-data {root}`")
    return DemoManifest.model_validate_json(path.read_text(encoding="utf-8"))
