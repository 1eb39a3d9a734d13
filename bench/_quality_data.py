"""Data sets and train/test splits of ``bench/quality.py``.

* ``hippocampus`` (default): the 200 labeled MSD Task04 cases of ``../shared/data/real/msd-hippocampus``,
  one fixed split of 160 training and 40 test cases (case names sorted, then permuted by
  ``numpy.random.default_rng(split_seed)``; the first 40 are the test cases). The split is written as
  two MSD-layout folders of symbolic links (``dataset.json`` rewritten to list the cases), so medseg
  ingests each as it would the original folder.
* ``pgbm``: the 4 labeled DICOM studies of ``../shared/data/real/tcia-brain-tumor-progression``,
  leave-one-study-out (4 folds); ``--patients PGBM-001`` keeps the 2 studies that have all three
  sequences (T1post, FLAIR, T2), the set to compare 1 and 3 channels on.
* ``--train DIR ... --test DIR ...``: one fold of the given folders (DICOM studies or MSD/nnU-Net
  layouts: whatever ``medseg ingest`` reads).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "real"
HIPPOCAMPUS = (SHARED / "msd-hippocampus").resolve()
PGBM = (SHARED / "tcia-brain-tumor-progression").resolve()
DATASETS = ("hippocampus", "pgbm")


@dataclass
class Fold:
    """One train/test split of source folders."""

    index: int
    train: list[Path]
    test: list[Path]
    name: str = ""


def pgbm_studies(root: Path = PGBM, patients: list[str] | None = None) -> list[Path]:
    """The study folders (``PGBM-xxx/<study>``) of the TCIA Brain-Tumor-Progression data (of ``patients``)."""
    studies = sorted(p for patient in sorted(root.glob("PGBM-*")) if not patients or patient.name in patients
                     for p in patient.iterdir() if p.is_dir())
    if not studies:
        raise SystemExit(f"no PGBM studies under {root}; pass --train DIR ... --test DIR ...")
    return studies


def msd_cases(root: Path) -> list[str]:
    """Case names (``hippocampus_003``) of an MSD folder that have both an image and a label."""
    images = {p.name.removesuffix(".nii.gz") for p in (root / "imagesTr").glob("*.nii.gz")}
    labels = {p.name.removesuffix(".nii.gz") for p in (root / "labelsTr").glob("*.nii.gz")}
    cases = sorted(images & labels)
    if not cases:
        raise SystemExit(f"no labeled cases (imagesTr/*.nii.gz with labelsTr/*.nii.gz) under {root}")
    return cases


def split_msd(cases: list[str], n_test: int, seed: int) -> tuple[list[str], list[str]]:
    """``(train, test)`` case names: a seeded permutation of the sorted names, the first ``n_test`` test."""
    if not 0 < n_test < len(cases):
        raise SystemExit(f"--test-cases {n_test} must be between 1 and {len(cases) - 1} (the set has {len(cases)})")
    order = np.random.default_rng(seed).permutation(len(cases))
    test = sorted(cases[i] for i in order[:n_test])
    return sorted(set(cases) - set(test)), test


def link_msd_subset(root: Path, cases: list[str], dest: Path) -> Path:
    """An MSD-layout folder at ``dest`` holding ``cases`` of ``root`` as symbolic links."""
    meta = json.loads((root / "dataset.json").read_text())
    for sub in ("imagesTr", "labelsTr"):
        (dest / sub).mkdir(parents=True, exist_ok=True)
        for case in cases:
            link = dest / sub / f"{case}.nii.gz"
            if not link.is_symlink():
                link.symlink_to(root / sub / f"{case}.nii.gz")
    meta.update(numTraining=len(cases), numTest=0, test=[],
                training=[{"image": f"./imagesTr/{c}.nii.gz", "label": f"./labelsTr/{c}.nii.gz"} for c in cases])
    (dest / "dataset.json").write_text(json.dumps(meta, indent=1))
    return dest


def hippocampus_fold(work: Path, n_test: int, split_seed: int, root: Path = HIPPOCAMPUS) -> Fold:
    """The fixed train/test split of the MSD hippocampus set as two linked MSD folders under ``work``."""
    train, test = split_msd(msd_cases(root), n_test, split_seed)
    return Fold(0, [link_msd_subset(root, train, work / "split" / "train")],
                [link_msd_subset(root, test, work / "split" / "test")],
                name=f"{root.name}: {len(train)} train / {len(test)} test (split seed {split_seed})")


def make_folds(dataset: str, train: list[str] | None, test: list[str] | None, work: Path, n_test: int,
               split_seed: int, max_folds: int = 0, patients: list[str] | None = None) -> list[Fold]:
    """The folds of one bench run (see the module docstring)."""
    if train or test:
        if not (train and test):
            raise SystemExit("give both --train and --test (or neither for the --dataset default)")
        return [Fold(0, [Path(p).resolve() for p in train], [Path(p).resolve() for p in test], name="given folders")]
    if dataset == "hippocampus":
        if not HIPPOCAMPUS.is_dir():
            raise SystemExit(f"{HIPPOCAMPUS} not found: the shared data holds the MSD hippocampus set")
        return [hippocampus_fold(work, n_test, split_seed)]
    studies = pgbm_studies(patients=patients)
    folds = [Fold(i, [s for s in studies if s != t], [t], name=t.name) for i, t in enumerate(studies)]
    return folds[:max_folds] if max_folds else folds
