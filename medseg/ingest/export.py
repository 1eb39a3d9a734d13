"""Export an ingested case (image or one of its labels) to NIfTI."""

from __future__ import annotations

from pathlib import Path

from medseg.io.catalog import Catalog
from medseg.io.nifti import write_nifti
from medseg.io.volume_store import read_case
from medseg.workspace import Workspace


def export_nifti(ws: Workspace, key: str, out: Path, label: str | None = None) -> Path:
    """Write the image (or label ``label``, e.g. ``"gt"``) of case ``key`` as NIfTI.

    Args:
        ws: Workspace holding the catalog and volume stores.
        key: A case_id or a SeriesInstanceUID.
        out: Output file (``.nii.gz``/``.nii``) or an existing folder (→ ``<case_id>[_<label>].nii.gz``).
        label: Export this label volume instead of the image.

    Returns:
        The written path; its affine equals ``geometry.nifti_affine()`` and its data is the
        ``(z, y, x)`` volume transposed to ``(x, y, z)``.

    Raises:
        KeyError: Unknown key, or unknown label name.
        FileNotFoundError: The workspace has no catalog.
    """
    record = Catalog(ws.catalog_path, create=False).case(key)
    case = read_case(record.volume_path, labels=label is not None)
    if label is not None and label not in case.labels:
        raise KeyError(f"case {record.case_id} has no label {label!r} (has: {sorted(case.labels) or 'none'})")
    out = Path(out)
    if out.is_dir():
        out = out / f"{record.case_id}{'_' + label if label else ''}.nii.gz"
    data = case.labels[label] if label is not None else case.image
    return write_nifti(out, data, case.geometry)
