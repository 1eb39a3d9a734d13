"""The fixed sets of values the command line accepts (typer shows them in ``--help`` and rejects others)."""

from __future__ import annotations

from enum import StrEnum


class CaseSelection(StrEnum):
    """``medseg infer --select``: which cases to predict when no ``--case`` is given."""

    TEST = "test"  # the held-out test split
    PENDING = "pending"  # every ingested case without a prediction from the champion


class ExportFormat(StrEnum):
    """``medseg export --format``."""

    NIFTI = "nifti"


class DatasetFormat(StrEnum):
    """``medseg export-dataset --format``."""

    NNUNET = "nnunet"  # nnU-Net v2 raw dataset folder


class ModelFormat(StrEnum):
    """``medseg export-model --format``."""

    MONAI_BUNDLE = "monai-bundle"  # configs/metadata.json, configs/inference.json, models/model.pt


class ExampleConfig(StrEnum):
    """``medseg config --example``: the configs shipped with medseg (``configs/<name>.yaml``)."""

    DEMO = "demo"  # CI-sized, for `medseg demo`
    DEFAULT = "default"  # sized for a real archive on a GPU box
    CPU = "cpu"  # a machine without a GPU: a narrower network trained to a wall-clock budget
