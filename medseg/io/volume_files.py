"""NIfTI / NRRD volume files and MSD / nnU-Net ``dataset.json``: headers, geometry, pixels, labels.

Geometry follows :mod:`medseg.geometry` (arrays ``(z, y, x)``, LPS):

* NIfTI: the file array is ``(x, y, z)`` with a RAS affine (sform, else qform, as nibabel picks);
  the array is transposed ``(2, 1, 0)`` and :meth:`Geometry.from_nifti_affine` gives the geometry.
* NRRD (pynrrd, Fortran index order, so the array is ``(a0, a1, a2)`` = file axes, fastest first):
  ``space directions`` row ``d`` is the step vector of file axis ``d`` in ``space`` coordinates,
  converted to LPS (``right-anterior-superior``/``RAS`` flip x and y, ``left-anterior-superior``
  flips y); our axis ``a`` is file axis ``2 - a``. Without ``space directions`` the ``spacings``
  are used with identity directions.

A 4th non-spatial axis (channels / time) is allowed: one channel is read (``channel``, default 0)
and the header records ``n_channels``.
"""

from __future__ import annotations

import json
import os
import re
import stat
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from medseg.geometry import Geometry
from medseg.io.reasons import IngestError, Reason

if TYPE_CHECKING:  # nibabel / pynrrd are imported on first use: DICOM-only workers never pay for them
    import nibabel as nib

VOLUME_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr")
DATASET_JSON = "dataset.json"
MAX_LABEL_VALUES = 64
_INT16 = np.iinfo(np.int16)
_LPS_FLIP = {
    "right-anterior-superior": (-1.0, -1.0, 1.0),
    "ras": (-1.0, -1.0, 1.0),
    "left-anterior-superior": (1.0, -1.0, 1.0),
    "las": (1.0, -1.0, 1.0),
    "left-posterior-superior": (1.0, 1.0, 1.0),
    "lps": (1.0, 1.0, 1.0),
}
_MR_CHANNELS = re.compile(r"^(mri?|t1\w*|t2\w*|flair|pd\w*|dwi|adc|swi|bold|dce|fla|ir)$", re.IGNORECASE)


def volume_suffix(path: str | Path) -> str:
    """The recognised volume suffix of ``path`` (``".nii.gz"`` ...), or ``""``."""
    name = os.path.basename(os.fspath(path)).lower()
    return next((s for s in VOLUME_SUFFIXES if name.endswith(s)), "")


def volume_stem(path: str | Path) -> str:
    """File name without its volume suffix (``"a_label.nii.gz"`` → ``"a_label"``)."""
    name = Path(path).name
    suffix = volume_suffix(name)
    return name[: len(name) - len(suffix)] if suffix else name


def _unreadable(path: Path, what: str) -> IngestError:
    return IngestError(Reason.VOLUME_UNREADABLE, f"{path}: {what}; re-export it as a 3D NIfTI or NRRD volume")


# --- NIfTI ------------------------------------------------------------------------------------
def _nifti(path: Path) -> nib.Nifti1Image | nib.Nifti2Image:
    import nibabel as nib

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            img = nib.load(str(path))
    except Exception as exc:  # noqa: BLE001
        raise _unreadable(path, f"NIfTI file cannot be read ({type(exc).__name__}: {exc})") from exc
    if not isinstance(img, nib.Nifti1Image | nib.Nifti2Image):
        raise _unreadable(path, f"not a NIfTI image (nibabel read it as {type(img).__name__})")
    return img


def _spatial_and_channels(shape: tuple[int, ...], path: Path) -> tuple[tuple[int, int, int], int]:
    """Split a NIfTI/NRRD shape into its 3 spatial sizes and the number of channels (1 = none)."""
    if len(shape) < 3:
        raise _unreadable(path, f"array of shape {shape} is not a 3D volume")
    extra = [s for s in shape[3:] if s != 1]
    if len(extra) > 1:
        raise _unreadable(path, f"array of shape {shape} has more than one non-spatial axis")
    return (int(shape[0]), int(shape[1]), int(shape[2])), int(extra[0]) if extra else 1


def _nifti_geometry(img: nib.Nifti1Image | nib.Nifti2Image, path: Path) -> Geometry:
    try:
        return Geometry.from_nifti_affine(np.asarray(img.affine, dtype=np.float64))
    except ValueError as exc:
        raise _unreadable(path, f"affine {np.round(img.affine, 4).tolist()} is not a valid geometry ({exc})") from exc



def nifti_volume(
    img: nib.Nifti1Image | nib.Nifti2Image, path: Path, channel: int = 0
) -> tuple[NDArray[Any], Geometry]:
    """One channel of a loaded NIfTI image as a ``(z, y, x)`` view (not yet contiguous) and its geometry.

    Raises:
        IngestError: ``volume_unreadable`` (not a 3D volume, invalid affine).
    """
    geometry = _nifti_geometry(img, path)
    _, n_channels = _spatial_and_channels(tuple(int(s) for s in img.shape), path)
    arr = np.asanyarray(img.dataobj)
    arr = arr.reshape(arr.shape[:3] + ((n_channels,) if n_channels > 1 else ()))
    if n_channels > 1:
        arr = arr[..., channel]
    return arr.transpose(2, 1, 0), geometry

# --- NRRD -------------------------------------------------------------------------------------
def _nrrd_geometry(header: dict[str, Any], path: Path) -> tuple[Geometry, list[int], int | None]:
    """Geometry, file indices of the 3 spatial axes, and the file index of a channel axis (or None)."""
    sizes = [int(s) for s in header.get("sizes", [])]
    space = str(header.get("space", "") or "").lower()
    flip = np.asarray(_LPS_FLIP.get(space, (1.0, 1.0, 1.0)))
    dirs = header.get("space directions")
    if dirs is not None:
        rows = [None if r is None or not np.all(np.isfinite(np.asarray(r, dtype=float))) else r for r in dirs]
        spatial = [d for d, r in enumerate(rows) if r is not None]
        vectors = {d: np.asarray(rows[d], dtype=np.float64) * flip for d in spatial}
    else:
        spacings = list(header.get("spacings", [1.0] * len(sizes)))
        spatial = [d for d, s in enumerate(spacings) if np.isfinite(float(s))][:3]
        vectors = {d: float(spacings[d]) * np.eye(3)[n] for n, d in enumerate(spatial)}
    if len(spatial) != 3:
        raise _unreadable(path, f"NRRD has {len(spatial)} spatial axes (sizes {sizes}); need 3")
    others = [d for d in range(len(sizes)) if d not in spatial and sizes[d] != 1]
    if len(others) > 1:
        raise _unreadable(path, f"NRRD has more than one non-spatial axis (sizes {sizes})")
    origin = header.get("space origin")
    origin_lps = np.zeros(3) if origin is None else np.asarray(origin, dtype=np.float64) * flip
    cols = [vectors[spatial[2 - a]] for a in range(3)]  # our axis a = file axis 2 - a
    spacing = np.array([np.linalg.norm(c) for c in cols])
    try:
        geometry = Geometry.create(
            spacing=spacing,
            origin=origin_lps,
            direction=np.column_stack([c / s for c, s in zip(cols, spacing, strict=True)]),
        )
    except (ValueError, ZeroDivisionError, FloatingPointError) as exc:
        raise _unreadable(path, f"NRRD space directions {dirs} are not a valid geometry ({exc})") from exc
    return geometry, spatial, others[0] if others else None


def _nrrd_header(path: Path) -> dict[str, Any]:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import nrrd

            return dict(nrrd.read_header(str(path)))
    except Exception as exc:  # noqa: BLE001
        raise _unreadable(path, f"NRRD header cannot be read ({type(exc).__name__}: {exc})") from exc


def check_data_file(header: dict[str, Any], path: Path, roots: Sequence[str] = ()) -> None:
    """A detached NRRD's data file must resolve (links followed) inside ``roots`` and be a regular file.

    Checked before the data is read: a header must not make ingest read ``../outside/secret.raw``, an
    absolute path elsewhere, or ``/dev/zero``. Without ``roots`` the data file must lie under the
    header's own folder.

    Raises:
        IngestError: ``external_data``.
    """
    name = header.get("data file", header.get("datafile"))
    if name is None:
        return
    name = str(name).strip()
    if name.upper().startswith("LIST") or "%" in name:
        raise IngestError(Reason.EXTERNAL_DATA, f"{path}: multi-file detached data ({name!r}) is not supported; "
                                                "re-export it as a single .nrrd file")
    target = os.path.realpath(os.path.join(path.parent, name))
    allowed = [os.path.realpath(r) for r in roots] or [os.path.realpath(path.parent)]
    inside = any(target == r or target.startswith(r.rstrip(os.sep) + os.sep) for r in allowed)
    if not inside:
        raise IngestError(Reason.EXTERNAL_DATA, f"{path}: data file {name!r} lies outside the ingest sources "
                                                f"({target}); not read. Move the data next to its header")
    try:
        regular = stat.S_ISREG(os.stat(target).st_mode)
    except OSError as exc:
        raise IngestError(Reason.EXTERNAL_DATA, f"{path}: data file {name!r} cannot be opened "
                                                f"({exc.strerror or exc})") from exc
    if not regular:
        raise IngestError(Reason.EXTERNAL_DATA, f"{path}: data file {name!r} is not a regular file "
                                                "(a device, FIFO or folder); not read")


# --- public API -------------------------------------------------------------------------------
def read_volume_header(path: str | Path) -> dict[str, Any]:
    """Header summary of a NIfTI/NRRD file (no voxel data is read).

    Returns:
        ``{"format": "nifti" | "nrrd", "shape": [z, y, x], "n_channels", "dtype", "geometry": {...}}``.

    Raises:
        IngestError: ``volume_unreadable``.
    """
    p = Path(path)
    if volume_suffix(p) in (".nrrd", ".nhdr"):
        header = _nrrd_header(p)
        geometry, spatial, channel_axis = _nrrd_geometry(header, p)
        sizes = [int(s) for s in header["sizes"]]
        if str(header.get("type", "")).lower() in ("block",):
            raise _unreadable(p, "NRRD of type 'block' is not a scalar volume")
        shape = [sizes[spatial[2 - a]] for a in range(3)]
        n_channels = sizes[channel_axis] if channel_axis is not None else 1
        return {
            "format": "nrrd",
            "shape": shape,
            "n_channels": n_channels,
            "dtype": str(header.get("type", "")),
            "geometry": geometry.to_dict(),
        }
    img = _nifti(p)
    (nx, ny, nz), n_channels = _spatial_and_channels(tuple(int(s) for s in img.shape), p)
    dtype = img.get_data_dtype()
    if dtype.names or not (np.issubdtype(dtype, np.integer) or np.issubdtype(dtype, np.floating)):
        raise _unreadable(p, f"voxel type {dtype} is not a scalar (RGB/complex NIfTI)")
    return {
        "format": "nifti",
        "shape": [nz, ny, nx],
        "n_channels": n_channels,
        "dtype": str(img.get_data_dtype()),
        "geometry": _nifti_geometry(img, p).to_dict(),
    }


def read_volume(path: str | Path, channel: int = 0, roots: Sequence[str] = ()) -> tuple[NDArray[Any], Geometry]:
    """Read one channel of a NIfTI/NRRD file as a ``(z, y, x)`` array (file dtype, scaling applied).

    ``roots``: the ingest sources; a detached NRRD's data file must lie inside them (see :func:`check_data_file`).

    Raises:
        IngestError: ``volume_unreadable``, ``external_data``.
    """
    p = Path(path)
    try:
        if volume_suffix(p) in (".nrrd", ".nhdr"):
            check_data_file(_nrrd_header(p), p, roots)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                import nrrd

                data, header = nrrd.read(str(p), index_order="F")
            geometry, spatial, channel_axis = _nrrd_geometry(dict(header), p)
            arr = np.asarray(data)
            axes = list(range(arr.ndim))  # file axis of each array axis
            if channel_axis is not None:
                arr = np.take(arr, channel, axis=channel_axis)
                axes.remove(channel_axis)
            drop = tuple(n for n, d in enumerate(axes) if d not in spatial)  # singleton non-spatial axes
            arr = arr.squeeze(axis=drop) if drop else arr
            pos = {d: n for n, d in enumerate(d for d in axes if d in spatial)}
            arr = np.transpose(arr, (pos[spatial[2]], pos[spatial[1]], pos[spatial[0]]))
        else:
            arr, geometry = nifti_volume(_nifti(p), p, channel)
    except IngestError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise _unreadable(p, f"voxel data cannot be read ({type(exc).__name__}: {exc})") from exc
    return np.ascontiguousarray(arr), geometry


def image_values(arr: NDArray[Any]) -> NDArray[Any]:
    """Image voxels as ``int16`` when every value is an integer inside the int16 range, else ``float32``."""
    if arr.size and np.issubdtype(arr.dtype, np.integer) and arr.min() >= _INT16.min and arr.max() <= _INT16.max:
        return arr.astype(np.int16)
    if arr.size and np.issubdtype(arr.dtype, np.floating) and np.all(np.isfinite(arr)):
        lo, hi = float(arr.min()), float(arr.max())
        if lo >= _INT16.min and hi <= _INT16.max and np.array_equal(arr, np.round(arr)):
            return arr.astype(np.int16)
    return arr.astype(np.float32)


def is_label_map(values: NDArray[Any], max_values: int) -> bool:
    """Whether the distinct ``values`` of an array (``np.unique``) can be a label map: at most
    ``max_values`` integers in 0..255 (an empty array is one)."""
    return not values.size or bool(
        np.all(np.isfinite(values))
        and np.all(np.equal(np.mod(values, 1), 0))
        and values.min() >= 0
        and values.max() <= 255
        and len(values) <= max_values
    )


def label_values(
    arr: NDArray[Any], names: dict[int, str], where: str, keep_absent: bool = True
) -> tuple[NDArray[np.uint8], dict[int, str]]:
    """Check a label array holds small non-negative integers and return it as uint8 with names.

    Values keep their meaning (dataset labels are consistent across cases); ``names`` maps values
    to names (values present but unnamed become ``label_<v>``; with ``keep_absent`` named values
    absent from this case are kept, so every case of a dataset has the same names).

    Raises:
        IngestError: ``label_not_mask`` when the values are not a label map.
    """
    values = np.unique(arr)
    if not is_label_map(values, MAX_LABEL_VALUES):
        raise IngestError(
            Reason.LABEL_NOT_MASK,
            f"{where}: label file holds {len(values)} distinct values in [{values.min()}, {values.max()}]; "
            "not a label map (expected integers 0..255)",
        )
    present = {int(v) for v in values if int(v) != 0}
    out = {k: v for k, v in names.items() if keep_absent or k in present}
    for v in sorted(present):
        out.setdefault(v, f"label_{v}")
    return arr.astype(np.uint8), {k: v for k, v in sorted(out.items()) if k != 0}


def modality_from_name(name: str) -> str:
    """``"CT"`` / ``"MR"`` / ``"PT"`` from a channel or BIDS suffix name, else the name upper-cased."""
    n = name.strip()
    if n.upper() in ("CT", "CTA", "NCCT"):
        return "CT"
    if n.upper() in ("PET", "PT"):
        return "PT"
    if _MR_CHANNELS.match(n):
        return "MR"
    return n.upper()


def read_dataset_json(path: str | Path) -> dict[str, Any]:
    """Summary of an MSD (``modality``, ``labels`` {"0": "background"}) or nnU-Net v2
    (``channel_names``, ``labels`` {"background": 0}, ``file_ending``) ``dataset.json``.

    Returns:
        ``{"layout": "nnunet_v2" | "msd", "name", "modality", "channels": {index: name},
        "labels": {value: name}, "file_ending"}``.

    Raises:
        IngestError: ``unsupported_object`` when it is not such a dataset description.
    """
    p = Path(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise IngestError(Reason.UNSUPPORTED_OBJECT, f"{p}: dataset.json cannot be parsed ({exc})") from exc
    if not isinstance(data, dict):
        data = {}
    channels_raw = data.get("channel_names") or data.get("modality")
    labels_raw = data.get("labels")
    if not isinstance(channels_raw, dict) or not isinstance(labels_raw, dict):
        raise IngestError(
            Reason.UNSUPPORTED_OBJECT,
            f"{p}: JSON without 'labels' and 'modality'/'channel_names'; not an MSD / nnU-Net dataset description",
        )
    channels = {int(k): str(v) for k, v in channels_raw.items() if str(k).isdigit()}
    labels: dict[int, str] = {}
    for k, v in labels_raw.items():
        if str(k).lstrip("-").isdigit():  # MSD: {"1": "spleen"}
            labels[int(k)] = str(v)
        elif isinstance(v, int):  # nnU-Net v2: {"spleen": 1}
            labels[v] = str(k)
        elif isinstance(v, list) and v and all(isinstance(x, int) for x in v):  # v2 regions: first value
            labels.setdefault(max(v), str(k))
    return {
        "layout": "nnunet_v2" if "channel_names" in data else "msd",
        "name": str(data.get("name", "") or p.parent.name),
        "modality": modality_from_name(channels.get(0, "")),
        "channels": {str(k): v for k, v in sorted(channels.items())},
        "labels": {str(k): v for k, v in sorted(labels.items()) if k != 0},
        "file_ending": str(data.get("file_ending", "") or ""),
    }
