"""medseg: archive-scale DICOM → segmentation pipeline (pure library; never imports prefect)."""

__version__ = "0.1.0"
