"""What the inputs of ``medseg predict`` hold after ingest: their cases, what yields nothing, and output names.

``medseg predict`` ingests its inputs (DICOM folders, NIfTI/NRRD files or folders) with the normal
ingest, into a temporary workspace or a given one, which may hold other sources too. The catalog then
says, for each input, which image cases came from it (through one file of each series,
:meth:`~medseg.io.catalog.files.FilesTable.first_file_of_series`) and what it held that is not
predictable: quarantined files and series (not DICOM, unreadable, too few slices, a missing channel
...) and series that are not images (SEG, RTSTRUCT, masks, label files).

Output names (:func:`name_outputs`): one per study, the de-identified study key (a keyed hash, as in
the catalog) or, with ``keep_names``, a readable name: a NIfTI/NRRD input's file stem; for DICOM, the
input folder's name when it holds a single study, else the StudyInstanceUID. A study with several
image series gets one output per series, ``<study name>_<series>`` (the case id, or with
``keep_names`` its SeriesDescription).
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from medseg.io.catalog import Catalog
from medseg.io.dicom.read import read_dataset
from medseg.io.volume_files import volume_stem

#: reason code of a series that is no image (SEG, RTSTRUCT, mask, label file): nothing to predict
NOT_IMAGE = "not_image"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class InputCase:
    """An ingested image case and the input it came from.

    Attributes:
        case_id: catalog case id (a keyed hash).
        source: the input (resolved path) holding the case's files.
        study_key: de-identified study key.
        first_file: one file of the case's image series (where its readable name comes from).
        from_dicom: a DICOM series (False: a NIfTI/NRRD file).
        description: SeriesDescription (DICOM) or file stem.
        name: output base name (set by :func:`name_outputs`).
    """

    case_id: str
    source: str
    study_key: str
    first_file: str
    from_dicom: bool
    description: str = ""
    name: str = ""


@dataclass(frozen=True)
class InputSkip:
    """Entries of one input not predicted for one reason: ``count`` of them, ``example`` the first."""

    source: str
    reason: str
    message: str
    example: str
    count: int = 1


@dataclass
class InputInventory:
    """The cases and skips of every input, inputs in the order given."""

    sources: list[str]
    cases: list[InputCase] = field(default_factory=list)
    skips: list[InputSkip] = field(default_factory=list)


def resolve_inputs(inputs: Iterable[Path | str]) -> list[str]:
    """The inputs as ingest records them (``~`` expanded, links resolved), duplicates dropped."""
    out: list[str] = []
    for p in inputs:
        text = str(Path(p).expanduser().resolve())
        if text not in out:
            out.append(text)
    return out


def _owner(path: str, sources: list[str]) -> str | None:
    """The deepest input that is ``path`` or holds it."""
    holding = [s for s in sources if path == s or path.startswith(s.rstrip("/") + "/")]
    return max(holding, key=len, default=None)


def inventory(catalog: Catalog, inputs: Iterable[Path | str]) -> InputInventory:
    """The ingested image cases of ``inputs`` and what they held that yields no prediction (see module doc)."""
    inv = InputInventory(resolve_inputs(inputs))
    first = catalog.first_file_of_series()
    grouped: dict[tuple[str, str], list[tuple[str, str]]] = defaultdict(list)  # (input, reason) -> (example, message)
    for row in sorted(catalog.series_rows().values(), key=lambda r: str(r["series_key"])):
        path = first.get(str(row["series_uid"]))
        source = _owner(path, inv.sources) if path else None
        if source is None:
            continue  # another source of a shared workspace
        kind, status = str(row["kind"]), str(row["status"])
        if kind == "image" and status == "ingested" and row.get("volume_path") and Path(row["volume_path"]).is_dir():
            inv.cases.append(_case(row, source, str(path)))
        elif kind != "image" and status != "quarantined":  # quarantined ones are in the quarantine table
            role = " (used as the label of a case)" if status == "label_source" else ""
            grouped[(source, NOT_IMAGE)].append(
                (str(path), f"{kind} series: not an image, nothing to predict{role}"))
        elif status not in ("ingested", "quarantined"):  # quarantined ones are in the quarantine table
            grouped[(source, status)].append((str(path), str(row.get("message") or f"image series {status}")))
    for q in catalog.quarantine():
        source = _owner(str(q["path"] or ""), inv.sources)
        if source is not None:
            grouped[(source, str(q["reason"]))].append((str(q["path"]), str(q["message"] or q["reason"])))
    for (source, reason), items in sorted(grouped.items(), key=lambda kv: (inv.sources.index(kv[0][0]), kv[0][1])):
        example, message = items[0]
        inv.skips.append(InputSkip(source, reason, message, example, len(items)))
    inv.cases.sort(key=lambda c: (inv.sources.index(c.source), c.study_key, c.case_id))
    return inv


def _case(row: dict[str, Any], source: str, path: str) -> InputCase:
    from_dicom = not str(row["series_uid"]).startswith("file:")
    return InputCase(
        case_id=str(row["case_id"]),
        source=source,
        study_key=str(row.get("study_key") or row["case_id"]),
        first_file=path,
        from_dicom=from_dicom,
        description=str(row.get("description") or ("" if from_dicom else volume_stem(path))),
    )


def safe_name(text: str) -> str:
    """``text`` as a file name: runs of characters other than letters, digits, ``.``, ``_`` and ``-`` become ``_``."""
    return _UNSAFE.sub("_", text).strip("._") or "unnamed"


def study_uid_of(path: str) -> str:
    """The StudyInstanceUID of a DICOM file ('' when it has none)."""
    return str(read_dataset(Path(path)).get("StudyInstanceUID", "") or "")


def name_outputs(
    inv: InputInventory, keep_names: bool, study_uid: Callable[[str], str] = study_uid_of
) -> list[InputCase]:
    """The cases of ``inv`` with their output base names, unique within the output folder (see module doc).

    Args:
        inv: the inventory of the inputs.
        keep_names: readable names instead of the de-identified study keys.
        study_uid: StudyInstanceUID of a DICOM file ('' when it has none); only called with ``keep_names``.
    """
    studies: dict[tuple[str, str], list[InputCase]] = defaultdict(list)
    for case in inv.cases:
        studies[(case.source, case.study_key)].append(case)
    studies_of: dict[str, int] = defaultdict(int)
    for source, _ in studies:
        studies_of[source] += 1
    taken: set[str] = set()
    named: list[InputCase] = []
    for (source, study_key), cases in studies.items():
        base = study_key
        if keep_names:
            base = _readable_study(cases[0], source, studies_of[source] == 1, study_uid) or study_key
        for case in cases:
            series = safe_name(case.description) if keep_names and case.description else case.case_id
            name = _unique(safe_name(base if len(cases) == 1 else f"{base}_{series}"), taken)
            named.append(replace(case, name=name))
    return named


def _readable_study(case: InputCase, source: str, only_study: bool, study_uid: Callable[[str], str]) -> str:
    if not case.from_dicom:
        return volume_stem(case.first_file)
    if only_study and Path(source).is_dir():
        return Path(source).name
    return study_uid(case.first_file)


def _unique(name: str, taken: set[str]) -> str:
    out, n = name, 1
    while out in taken:
        n += 1
        out = f"{name}-{n}"
    taken.add(out)
    return out
