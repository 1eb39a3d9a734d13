"""Export ingested cases: one case (image or one of its labels) to NIfTI, or the workspace as an nnU-Net dataset."""

from __future__ import annotations

from pathlib import Path

import medseg
from medseg.io.case_arrays import channel_names
from medseg.io.catalog import Catalog
from medseg.io.nifti import write_nifti
from medseg.io.nnunet_dataset import DatasetCase, DatasetSummary, write_nnunet_dataset
from medseg.io.volume_store import read_case
from medseg.splits import Splits
from medseg.workspace import Workspace


def export_nifti(ws: Workspace, key: str, out: Path, label: str | None = None, channel: str | None = None) -> Path:
    """Write the image (or label ``label``, e.g. ``"gt"``) of case ``key`` as NIfTI.

    A multi-channel case (``ingest.channels``) exports one channel: ``channel`` (a name), else its first;
    written into a folder, the file is named ``<case_id>_<channel>.nii.gz``.

    Args:
        ws: Workspace holding the catalog and volume stores.
        key: A case_id or a SeriesInstanceUID.
        out: Output file (``.nii.gz``/``.nii``) or an existing folder (→ ``<case_id>[_<label>].nii.gz``).
        label: Export this label volume instead of the image.
        channel: Channel name of a multi-channel case (default: the first channel).

    Returns:
        The written path; its affine equals ``geometry.nifti_affine()`` and its data is the
        ``(z, y, x)`` volume transposed to ``(x, y, z)``.

    Raises:
        KeyError: Unknown key, unknown label name, or a channel the case does not have.
        FileNotFoundError: The workspace has no catalog.
    """
    record = Catalog(ws.catalog_path, create=False).case(key)
    case = read_case(record.volume_path, labels=label is not None)
    if label is not None and label not in case.labels:
        raise KeyError(f"case {record.case_id} has no label {label!r} (has: {sorted(case.labels) or 'none'})")
    names = case.channel_names or ([channel] if channel else [])
    if channel is not None and channel not in names:
        raise KeyError(f"case {record.case_id} has no channel {channel!r} (has: {case.channel_names or 'one image'})")
    index = names.index(channel) if channel is not None else 0
    suffix = label if label else (names[index] if case.channel_names else "")
    out = Path(out)
    if out.is_dir():
        out = out / f"{record.case_id}{'_' + suffix if suffix else ''}.nii.gz"
    data = case.labels[label] if label is not None else ([case.image, *case.channels][index])
    return write_nifti(out, data, case.geometry)


def dataset_cases(ws: Workspace) -> tuple[list[DatasetCase], list[DatasetCase], list[str]]:
    """The workspace's cases as an nnU-Net dataset would hold them: ``(training, test, channel_names)``.

    Training: every ingested case with ground-truth labels, except the held-out test split
    (``preprocessed/splits.json``, when preprocessing made one). Test (``imagesTs``): the test-split cases
    and every case without labels. Cases are named by their case id. The channels are the first training
    case's (a multi-channel store's ``channel_names``), else one channel named by its modality (``CT``
    makes nnU-Net use its CT normalisation).

    Raises:
        FileNotFoundError: the workspace has no catalog.
    """
    records = Catalog(ws.catalog_path, create=False).cases()
    held_out = set(Splits.load(ws.splits_path).test) if ws.splits_path.is_file() else set()
    training = [r for r in records if r.has_labels and r.case_id not in held_out]
    chosen = {r.case_id for r in training}
    test = [r for r in records if r.case_id not in chosen]
    first = training[0] if training else None
    names = (channel_names(first.volume_path) or [first.modality or "image"]) if first else ["image"]
    return ([DatasetCase(r.case_id, r.volume_path) for r in training],
            [DatasetCase(r.case_id, r.volume_path) for r in test], names)


def export_nnunet_dataset(ws: Workspace, out: Path, overwrite: bool = False) -> DatasetSummary:
    """Write the workspace's labeled cases as an nnU-Net v2 raw dataset folder ``out`` (:func:`dataset_cases`
    chooses the cases; :func:`medseg.io.nnunet_dataset.write_nnunet_dataset` writes them).

    Raises:
        ValueError: the workspace has no labeled case outside the test split.
        FileExistsError: ``out`` exists and ``overwrite`` is False.
    """
    training, test, names = dataset_cases(ws)
    if not training:
        raise ValueError(f"{ws.root}: no ingested case with labels outside the test split to export as training data")
    description = f"exported by medseg {medseg.__version__}: {len(training)} training, {len(test)} test cases"
    return write_nnunet_dataset(Path(out), training, test, names, description=description, overwrite=overwrite)
