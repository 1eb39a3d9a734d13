"""Synthetic demo data: CT-like phantoms written as a DICOM archive with DICOM SEG ground truth."""

from medseg.demo.archive import DemoArchiveError, generate_demo_archive, phantom_for_case
from medseg.demo.manifest import DemoCase, DemoManifest, load_manifest
from medseg.demo.phantom import LABEL_NAMES, make_phantom

__all__ = [
    "LABEL_NAMES",
    "DemoArchiveError",
    "DemoCase",
    "DemoManifest",
    "generate_demo_archive",
    "load_manifest",
    "make_phantom",
    "phantom_for_case",
]
