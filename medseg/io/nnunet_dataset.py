"""nnU-Net v2 raw dataset folders: the one writer (``medseg export-dataset --format nnunet``).

Layout written (what ``nnUNetv2_plan_and_preprocess`` reads from ``$nnUNet_raw/DatasetNNN_Name``)::

    imagesTr/<case>_0000.nii.gz    channel 0 of a training case (_0001 ... for the other channels)
    labelsTr/<case>.nii.gz         its labels (uint8, the dataset-wide values of ``labels``)
    imagesTs/<case>_0000.nii.gz    cases that are not training cases (held-out test split, unlabeled)
    labelsTs/<case>.nii.gz         labels of labeled imagesTs cases (nnU-Net ignores them; medseg ingest reads them)
    dataset.json                   channel_names, labels ({"background": 0, name: value}), numTraining,
                                   file_ending ".nii.gz", name, description

Images and labels are written by :func:`medseg.io.nifti.write_nifti` (array ``(z, y, x)`` stored as
``(x, y, z)``, affine ``Geometry.nifti_affine()``), so nnU-Net sees the cases' own geometry. The
reader of this layout is ingest (:func:`medseg.io.volume_files.read_dataset_json` and
:mod:`medseg.ingest.volume_file_cases`): an exported folder ingests back to the same images, labels
and geometry.

Labels: cases may number the same structure differently (DICOM SEG segments are numbered per case),
so the dataset's values are assigned by name, in order of first appearance over the cases (training
cases first, each case's values ascending), and every label map is renumbered to them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from medseg.io.folder_write import folder_written_whole
from medseg.io.nifti import write_nifti
from medseg.io.volume_store import read_case, read_meta

FILE_ENDING = ".nii.gz"
DATASET_JSON = "dataset.json"
GT = "gt"


@dataclass(frozen=True)
class DatasetCase:
    """One case to export: its volume store and its file name stem in the dataset (``<name>_0000.nii.gz``)."""

    name: str
    volume_path: Path


@dataclass
class DatasetSummary:
    """What :func:`write_nnunet_dataset` wrote."""

    root: Path
    training: list[str] = field(default_factory=list)
    test: list[str] = field(default_factory=list)
    channel_names: list[str] = field(default_factory=list)
    labels: dict[str, int] = field(default_factory=dict)


def _check_names(cases: Sequence[DatasetCase]) -> None:
    names = [c.name for c in cases]
    if len(set(names)) != len(names):
        raise ValueError(f"nnU-Net dataset: case names must be unique, got duplicates in {sorted(names)}")
    for n in names:
        if not n or "/" in n or re.search(r"_\d{4}$", n):
            raise ValueError(f"nnU-Net dataset: case name {n!r} is empty, holds '/' or ends like a channel suffix")


def _dataset_labels(cases: Sequence[DatasetCase]) -> dict[str, int]:
    """``{name: value}`` over the cases: values by name, in order of first appearance."""
    labels: dict[str, int] = {}
    for c in cases:
        stored = read_meta(c.volume_path).get("label_names") or {}
        for _, name in sorted((int(k), str(v)) for k, v in stored.items()):
            labels.setdefault(name, len(labels) + 1)
    return labels


def _write_case(root: Path, split: str, case: DatasetCase, names: list[str], labels: dict[str, int]) -> None:
    """The case's channel files, and its label file renumbered to the dataset's values (if it has labels)."""
    stored = read_case(case.volume_path, labels=True)
    if (stored.channel_names or names[:1]) != names:
        raise ValueError(f"{case.volume_path}: channels {stored.channel_names or ['(one image)']} differ from the "
                         f"dataset's {names}; every case of an nnU-Net dataset needs the same channels in one order")
    for k, array in enumerate([stored.image, *stored.channels]):
        write_nifti(root / f"images{split}" / f"{case.name}_{k:04d}{FILE_ENDING}", array, stored.geometry)
    if GT not in stored.labels:
        if split == "Tr":
            raise ValueError(f"{case.volume_path}: training case {case.name} has no ground-truth labels")
        return
    lut = np.zeros(256, dtype=np.uint8)
    for value, name in stored.label_names.items():
        lut[int(value)] = labels[name]
    write_nifti(root / f"labels{split}" / f"{case.name}{FILE_ENDING}", lut[stored.labels[GT]], stored.geometry)


def write_nnunet_dataset(
    root: Path,
    training: Sequence[DatasetCase],
    test: Sequence[DatasetCase] = (),
    channel_names: Sequence[str] = ("image",),
    description: str = "",
    overwrite: bool = False,
) -> DatasetSummary:
    """Write an nnU-Net v2 raw dataset folder at ``root`` (layout: module docstring).

    The folder appears whole or not at all: it is written under a hidden sibling name and renamed.

    Args:
        root: the dataset folder; nnU-Net finds it by id when it is ``$nnUNet_raw/DatasetNNN_Name``.
        training: labeled cases, written to imagesTr/labelsTr.
        test: cases written to imagesTs (their labels, if any, to labelsTs).
        channel_names: every input channel's name in channel order (files ``_0000``, ``_0001`` ...);
            a multi-channel case's store must hold exactly these channels (its ``channel_names``).
            nnU-Net normalises a channel named ``CT`` with dataset statistics, any other per case (z-score).
        description: the dataset.json description.
        overwrite: replace an existing dataset folder (else an existing ``root`` is an error).

    Raises:
        FileExistsError: ``root`` exists and ``overwrite`` is False.
        ValueError: no training case, duplicate or malformed case names, a training case without labels,
            or a case whose channels differ from ``channel_names``.
    """
    root = Path(root)
    if not training:
        raise ValueError(f"{root}: an nnU-Net dataset needs at least one labeled training case")
    if root.exists() and not overwrite:
        raise FileExistsError(f"{root} exists: choose a new folder or overwrite it (medseg export-dataset --force)")
    _check_names([*training, *test])
    names = [str(n) for n in channel_names] or ["image"]
    labels = _dataset_labels([*training, *test])
    with folder_written_whole(root) as tmp:
        for sub in ("imagesTr", "labelsTr"):
            (tmp / sub).mkdir()
        for case in training:
            _write_case(tmp, "Tr", case, names, labels)
        for case in test:
            _write_case(tmp, "Ts", case, names, labels)
        document = {
            "channel_names": {str(k): n for k, n in enumerate(names)},
            "labels": {"background": 0, **labels},
            "numTraining": len(training),
            "file_ending": FILE_ENDING,
            "name": root.name,
            "description": description,
        }
        (tmp / DATASET_JSON).write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    return DatasetSummary(root=root, training=[c.name for c in training], test=[c.name for c in test],
                          channel_names=names, labels=labels)
