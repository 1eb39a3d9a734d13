"""Export an ingested case (image or one of its labels) to NIfTI."""

from __future__ import annotations

from pathlib import Path

from medseg.io.catalog import Catalog
from medseg.io.nifti import write_nifti
from medseg.io.volume_store import read_case
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
