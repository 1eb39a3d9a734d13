"""Pair NIfTI/NRRD image and label files into cases (header dicts only; no voxel I/O).

Two layouts are recognised:

* **MSD / nnU-Net raw dataset**: a folder with ``dataset.json`` and ``imagesTr/`` (``imagesTs/``),
  ``labelsTr/`` (``labelsTs/``). ``imagesTr/<case>_<XXXX><ending>`` (nnU-Net v2, i.e. a
  dataset.json with ``channel_names``: channel XXXX) or ``imagesTr/<case><ending>`` (MSD, a
  dataset.json with ``modality``: channels in a 4th axis) pairs with
  ``labelsTr/<case><ending>``. Channel 0 is the case image (other channels are quarantined
  ``extra_channel``); with ``ingest.channels`` an MSD 4D image's channels and an nnU-Net case's channel
  files are mapped onto the rules by :func:`medseg.ingest.channels.apply_file_channels`. Modality and
  label names come from ``dataset.json`` (``channel_names``/``modality``, ``labels``).
* **Standalone pairs** anywhere else: a label file is recognised by its name,
  ``<base>_seg|_label|_labels|_mask|_segmentation|_labelmap|_gt`` (``_`` or ``-``, e.g.
  pyradiomics ``brain1_label.nrrd``, ITK-SNAP ``MRIcrop-seg.nii.gz``) or a BIDS derivative
  ``<base>_<desc>-manual`` (ivadomed ``sub-01_T2w_seg-manual.nii.gz``), and labels the image whose
  stem is ``<base>`` or ``<base>_image|_img|_orig|_volume`` (nearest folder wins). When several
  label files fit one image, the best-named one (seg > label > mask > others) on the same grid is
  used and the others are quarantined ``label_ambiguous``. ITK-SNAP label descriptions
  (``<label stem>.label`` beside the label file) name the values.

A label must have exactly the image's shape and geometry, else it is quarantined
``label_mismatch`` and the image is ingested without it. Case ids are
``keyed_hash(secret, "file:" + key)`` with ``key`` the file path relative to the dataset folder's
parent (MSD) or to the ingest source's parent (standalone), so moving an archive keeps its ids.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from medseg.deid import keyed_hash
from medseg.geometry import Geometry
from medseg.ingest.build import CaseJob, LabelSource
from medseg.ingest.masks import same_grid
from medseg.ingest.stacks import Stack
from medseg.io.reasons import Reason
from medseg.io.volume_files import modality_from_name, volume_stem, volume_suffix
from medseg.workspace import Workspace

_DATASET_IMAGE_DIRS = {"imagesTr": "Tr", "imagesTs": "Ts"}
_DATASET_LABEL_DIRS = {"labelsTr": "Tr", "labelsTs": "Ts"}
_CHANNEL = re.compile(r"^(?P<case>.+)_(?P<channel>\d{4})$")
_BIDS_LABEL = re.compile(r"^(?P<base>.+)_(?P<desc>[A-Za-z0-9]+(?:-[A-Za-z0-9]+)*)-manual$")
_GENERIC_LABEL = re.compile(
    r"^(?P<base>.+?)[_-](?P<desc>seg|segmentation|label|labels|labelmap|mask|gt)$", re.IGNORECASE
)
_LABEL_PRIORITY = {"seg": 0, "segmentation": 0, "label": 1, "labels": 1, "labelmap": 1, "mask": 2, "gt": 3}
_LABEL_WORDS = frozenset(_LABEL_PRIORITY)
_IMAGE_TOKEN = re.compile(r"^(?P<base>.+?)[_-](image|img|orig|volume|vol)$", re.IGNORECASE)
_BIDS_SUBJECT = re.compile(r"^sub-[A-Za-z0-9]+$")
_GENERIC_DESCS = ("seg", "segmentation", "label", "labels", "labelmap", "mask", "gt")


@dataclass
class FilePlan:
    cases: list[tuple[CaseJob, Stack]] = field(default_factory=list)
    series_rows: list[dict[str, Any]] = field(default_factory=list)
    quarantine: list[dict[str, Any]] = field(default_factory=list)
    file_series: dict[str, str] = field(default_factory=dict)  # path -> "file:<key>" of images and labels
    orphans: list[OrphanLabel] = field(default_factory=list)  # label files with no image file to pair with
    channel_files: dict[str, dict[int, dict[str, Any]]] = field(default_factory=dict)  # nnU-Net: case_id -> files


@dataclass(frozen=True)
class OrphanLabel:
    """A NIfTI/NRRD label file without an image file; a DICOM series on the same grid may claim it.

    ``series_key`` is its series-table key, ``source`` the :class:`LabelSource` a claiming case uses.
    """

    path: str
    series_key: str
    priority: int
    shape: tuple[int, int, int]
    geometry: Geometry
    source: LabelSource
    stat: tuple[int, int] = (-1, -1)  # (size, mtime_ns): part of the claiming case's content hash


@dataclass
class _Label:
    header: dict[str, Any]
    key: str
    desc: str
    priority: int
    names: dict[int, str] = field(default_factory=dict)
    dataset: bool = False  # names are dataset-wide (MSD / nnU-Net dataset.json)


def _relkey(path: str, roots: list[str]) -> str:
    """``<source folder name>/<path relative to it>`` for the deepest source holding ``path``."""
    p = Path(path)
    best = max((Path(r) for r in roots if p.is_relative_to(r)), key=lambda r: len(r.parts), default=None)
    if best is None:
        return p.as_posix()
    return (Path(best.name) / p.relative_to(best)).as_posix()


def _geometry(h: dict[str, Any]) -> Geometry:
    return Geometry.from_dict(h["geometry"])


def _shape(h: dict[str, Any]) -> tuple[int, int, int]:
    z, y, x = (int(v) for v in h["shape"])
    return (z, y, x)


def _aligned(image: dict[str, Any], label: dict[str, Any]) -> bool:
    return same_grid(_geometry(image), _shape(image), _geometry(label), _shape(label))


def _mismatch_message(image: dict[str, Any], label: dict[str, Any]) -> str:
    gi, gl = _geometry(image), _geometry(label)
    return (
        f"{label['path']}: label grid (shape {_shape(label)}, spacing {np.round(gl.spacing, 4).tolist()}, origin "
        f"{np.round(gl.origin, 3).tolist()}) differs from its image {image['path']} (shape {_shape(image)}, spacing "
        f"{np.round(gi.spacing, 4).tolist()}, origin {np.round(gi.origin, 3).tolist()}); resample the label onto "
        "the image grid"
    )


def read_itksnap_labels(path: Path) -> dict[int, str]:
    """``{value: name}`` from an ITK-SNAP label description file (``IDX R G B A VIS MSH "LABEL"``)."""
    names: dict[int, str] = {}
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return names
    for line in lines:
        m = re.match(r'^\s*(\d+)\s+.*"(.*)"\s*$', line)
        if m and int(m.group(1)) != 0:
            names[int(m.group(1))] = m.group(2).strip() or f"label_{m.group(1)}"
    return names


class _Builder:
    def __init__(self, ws: Workspace, secret: str, roots: list[str]) -> None:
        self.ws, self.secret, self.roots = ws, secret, roots
        self.plan = FilePlan()

    def quarantine(self, h: dict[str, Any], reason: Reason, message: str, case_id: str | None = None) -> None:
        self.plan.quarantine.append(
            {"path": h["path"], "series_uid": None, "case_id": case_id, "reason": reason.value, "message": message}
        )

    def label_row(self, lab: _Label, status: str, reason: Reason | None, message: str) -> None:
        key = keyed_hash(self.secret, "file:" + lab.key, prefix="lbl_")
        self.plan.file_series[lab.header["path"]] = "file:" + lab.key
        self.plan.series_rows.append(
            {
                "series_key": key,
                "case_id": key,
                "series_uid": "file:" + lab.key,
                "stack_key": "",
                "kind": "label_file",
                "modality": "",
                "description": volume_stem(lab.header["path"]),
                "n_instances": 1,
                "shape": list(_shape(lab.header)),
                "spacing": list(_geometry(lab.header).spacing),
                "geometry": lab.header["geometry"],
                "status": status,
                "reason": reason.value if reason else None,
                "message": message,
            }
        )
        if status == "quarantined" and reason is not None:
            self.quarantine(lab.header, reason, message)

    def orphan(self, lab: _Label, base: str) -> None:
        """Offer an unpaired label file to the DICOM series (see :class:`OrphanLabel`).

        Its file name names the structure (``liver_seg.nrrd`` -> "liver"; a bare ``label.nrrd`` -> "foreground").
        """
        itk = Path(lab.header["path"]).with_name(volume_stem(lab.header["path"]) + ".label")
        names = read_itksnap_labels(itk) if itk.is_file() else {}
        clean = re.sub(r"[^A-Za-z0-9]+", "_", base).strip("_").lower() or "foreground"
        self.plan.orphans.append(
            OrphanLabel(
                path=lab.header["path"],
                series_key=keyed_hash(self.secret, "file:" + lab.key, prefix="lbl_"),
                priority=lab.priority,
                shape=_shape(lab.header),
                geometry=_geometry(lab.header),
                source=LabelSource(
                    kind="file",
                    series_uid="file:" + lab.key,
                    path=lab.header["path"],
                    description=clean,
                    names=tuple(sorted(names.items())),
                ),
                stat=(int(lab.header.get("size", -1)), int(lab.header.get("mtime_ns", -1))),
            )
        )

    def case(
        self,
        image: dict[str, Any],
        key: str,
        modality: str,
        labels: list[_Label],
        channel: int = 0,
        patient: str | None = None,
        extra: dict[str, Any] | None = None,
    ) -> str:
        """Add one case (image header + label candidates); returns its case_id."""
        case_id = keyed_hash(self.secret, "file:" + key, prefix="case_")
        self.plan.file_series[image["path"]] = "file:" + key
        aligned: list[_Label] = []
        for lab in labels:
            if _aligned(image, lab.header):
                aligned.append(lab)
            else:
                self.label_row(lab, "quarantined", Reason.LABEL_MISMATCH, _mismatch_message(image, lab.header))
        aligned.sort(key=lambda lab: (lab.priority, lab.header["path"]))
        for lab in aligned[1:]:
            self.label_row(
                lab,
                "quarantined",
                Reason.LABEL_AMBIGUOUS,
                f"{lab.header['path']}: image {image['path']} is already labeled by {aligned[0].header['path']} "
                "(medseg uses one label file per image: seg > label > mask > others)",
            )
        sources = []
        if aligned:
            chosen = aligned[0]
            self.label_row(chosen, "label_source", None, f"labels {case_id}")
            sources.append(
                LabelSource(
                    kind="file",
                    series_uid="file:" + chosen.key,
                    path=chosen.header["path"],
                    description=chosen.desc,
                    names=tuple(sorted(chosen.names.items())),
                    all_names=chosen.dataset,
                )
            )
        geometry = _geometry(image)
        study_key = keyed_hash(self.secret, "file:" + key, prefix="study_")
        patient_key = keyed_hash(self.secret, patient or "file:" + key, prefix="pat_")
        job = CaseJob(
            case_id=case_id,
            volume_path=str(self.ws.volume_path(case_id)),
            frames=[],
            geometry=geometry,
            source={
                "series_uid": "file:" + key,
                "study_key": study_key,
                "patient_key": patient_key,
                "modality": modality,
                "n_instances": 1,
                "stack_key": "",
                "file": key,
                "channel": channel,
                **(extra or {}),
            },
            labels=sources,
            image_file=image["path"],
            channel=channel,
            file_shape=_shape(image),
        )
        stack = Stack(
            series_uid="file:" + key,
            stack_key="",
            frames=[],
            info={
                "modality": modality,
                "description": volume_stem(image["path"]),
                "study_key": study_key,
                "patient_key": patient_key,
            },
            geometry=geometry,
            paths=[image["path"]],
            file_shape=_shape(image),
        )
        self.plan.cases.append((job, stack))
        return case_id


def plan_volume_files(headers: list[dict[str, Any]], ws: Workspace, secret: str, roots: list[str]) -> FilePlan:
    """Cases, label rows and quarantine entries for ``kind in ("volume", "dataset")`` headers."""
    b = _Builder(ws, secret, [str(Path(r)) for r in roots])
    datasets = {str(Path(h["path"]).parent): h for h in headers if h.get("kind") == "dataset"}
    standalone: list[dict[str, Any]] = []
    members: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for h in headers:
        if h.get("kind") != "volume":
            continue
        parent = Path(h["path"]).parent
        is_member = parent.name in (*_DATASET_IMAGE_DIRS, *_DATASET_LABEL_DIRS)
        if is_member and str(parent.parent) in datasets:
            members[str(parent.parent)].append(h)
        else:
            standalone.append(h)
    for ds_dir, hs in sorted(members.items()):
        _plan_dataset(b, Path(ds_dir), datasets[ds_dir], hs)
    _plan_standalone(b, standalone)
    return b.plan


def _plan_dataset(b: _Builder, ds_dir: Path, info: dict[str, Any], headers: list[dict[str, Any]]) -> None:
    ending = str(info.get("file_ending") or "")
    names = {int(k): str(v) for k, v in (info.get("labels") or {}).items()}
    modality = str(info.get("modality") or "")
    images: dict[tuple[str, str], dict[int, dict[str, Any]]] = defaultdict(dict)
    labels: dict[tuple[str, str], dict[str, Any]] = {}

    def key_of(h: dict[str, Any]) -> str:
        return (Path(ds_dir.name) / Path(h["path"]).relative_to(ds_dir)).as_posix()

    for h in sorted(headers, key=lambda h: h["path"]):
        p = Path(h["path"])
        suffix = ending if ending and p.name.endswith(ending) else volume_suffix(p)
        name = p.name[: len(p.name) - len(suffix)]
        if p.parent.name in _DATASET_IMAGE_DIRS:
            m = _CHANNEL.match(name) if info.get("layout", "nnunet_v2") == "nnunet_v2" else None
            case, channel = (m.group("case"), int(m.group("channel"))) if m else (name, 0)
            images[(_DATASET_IMAGE_DIRS[p.parent.name], case)][channel] = h
        else:
            labels[(_DATASET_LABEL_DIRS[p.parent.name], name)] = h
    for (split, case), channels in sorted(images.items()):
        main = min(channels)
        image = channels[main]
        lab_header = labels.pop((split, case), None)
        cands = [_Label(lab_header, key_of(lab_header), "", 0, names, dataset=True)] if lab_header is not None else []
        n_ch = max(len(channels), int(image.get("n_channels", 1)))
        case_id = b.case(
            image,
            key_of(image),
            modality,
            cands,
            channel=0,
            extra={"dataset": str(info.get("name") or ds_dir.name), "dataset_case": case, "n_channels": n_ch},
        )
        if len(channels) > 1:  # with ingest.channels, plan_file_channels maps them by channel_names
            b.plan.channel_files[case_id] = dict(channels)
        for ch, h in sorted(channels.items()):
            if ch != main:
                b.quarantine(
                    h,
                    Reason.EXTRA_CHANNEL,
                    f"{h['path']}: channel {ch} of dataset case {case!r} is not used: the case is single-channel "
                    f"({Path(image['path']).name}) unless ingest.channels names this channel",
                    case_id,
                )
    for (_, name), h in sorted(labels.items()):
        b.label_row(
            _Label(h, key_of(h), "", 0, names),
            "quarantined",
            Reason.LABEL_UNMATCHED,
            f"{h['path']}: dataset label {name!r} has no image {name}_0000 / {name} in {ds_dir}",
        )


def label_kind(stem: str) -> tuple[str, str, int] | None:
    """``(base, desc, priority)`` when ``stem`` names a label file, else None."""
    if stem.lower() in _LABEL_WORDS:  # a bare "label.nrrd" / "seg.nii.gz": no image file name to pair with
        head = stem.lower()
        return "", head, _LABEL_PRIORITY.get(head, 4)
    m = _BIDS_LABEL.match(stem) or _GENERIC_LABEL.match(stem)
    if m is None:
        return None
    desc = m.group("desc").lower()
    head = desc.split("-")[0]
    priority = _LABEL_PRIORITY.get(head, 4)
    return m.group("base"), desc, priority


def _common_suffix(a: Path, b: Path) -> int:
    n = 0
    for x, y in zip(reversed(a.parts), reversed(b.parts), strict=False):
        if x != y:
            break
        n += 1
    return n


def _bids(path: str) -> tuple[str | None, str]:
    """(BIDS subject folder name or None, modality from the BIDS suffix of the file name or "")."""
    p = Path(path)
    subject = next((part for part in reversed(p.parts[:-1]) if _BIDS_SUBJECT.match(part)), None)
    token = volume_stem(p).rsplit("_", 1)[-1]
    modality = modality_from_name(token) if "_" in volume_stem(p) else ""
    return subject, modality if modality in ("CT", "MR", "PT") else ""


def _plan_standalone(b: _Builder, headers: list[dict[str, Any]]) -> None:
    images: dict[str, list[dict[str, Any]]] = defaultdict(list)  # lookup key -> image headers
    image_list: list[dict[str, Any]] = []
    label_list: list[tuple[dict[str, Any], str, str, int]] = []
    for h in sorted(headers, key=lambda h: h["path"]):
        stem = volume_stem(h["path"])
        kind = label_kind(stem)
        if kind is not None:
            label_list.append((h, *kind))
            continue
        image_list.append(h)
        keys = {stem}
        m = _IMAGE_TOKEN.match(stem)
        if m:
            keys.add(m.group("base"))
        for k in keys:
            images[k].append(h)
    per_image: dict[str, list[_Label]] = defaultdict(list)
    for h, base, desc, priority in label_list:
        key = _relkey(h["path"], b.roots)
        cands = images.get(base, [])
        if cands:
            parent = Path(h["path"]).parent
            scores = [_common_suffix(parent, Path(c["path"]).parent) for c in cands]
            best = max(scores)
            cands = [c for c, s in zip(cands, scores, strict=True) if s == best]
        if len(cands) != 1:
            where = "no image file named" if not cands else f"{len(cands)} equally close image files named"
            lab = _Label(h, key, desc, priority)
            b.label_row(
                lab,
                "quarantined",
                Reason.LABEL_UNMATCHED,
                f"{h['path']}: label file with {where} {base!r} (.nii.gz/.nrrd) and no DICOM series on its grid "
                "to pair it with",
            )
            if not cands:
                b.orphan(lab, base)
            continue
        itk = Path(h["path"]).with_name(volume_stem(h["path"]) + ".label")
        names = read_itksnap_labels(itk) if itk.is_file() else {}
        clean = "foreground" if desc.split("-")[0] in _GENERIC_DESCS else desc.replace("-", "_")
        per_image[cands[0]["path"]].append(_Label(h, key, clean, priority, names))
    for h in image_list:
        subject, modality = _bids(h["path"])
        key = _relkey(h["path"], b.roots)
        root = key.split("/", 1)[0]
        patient = f"file-subject:{root}/{subject}" if subject else None
        b.case(h, key, modality, per_image.get(h["path"], []), patient=patient)
