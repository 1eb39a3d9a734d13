"""Atomic file writes (temp file + fsync + rename) and versioned JSON documents.

Every medseg file that a reader may open while it is rewritten (plans, fingerprints, splits, stage
records, bundle metadata, evaluation summaries ...) is written here: to a hidden temporary sibling
``.<name>.<random>.tmp``, flushed to disk, then renamed over the target, so a reader sees the old
or the new file, never a torn one; a crash leaves at most the temporary file behind.

Versioned documents carry their format version in one field, :data:`SCHEMA_FIELD`
(``"schema_version": <int>``); :func:`check_schema_version` is the one check of it. Files
written before that convention spelled it ``"schema"``: it is still read.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

#: the field that holds the format version of a versioned JSON document
SCHEMA_FIELD = "schema_version"
#: older spellings of :data:`SCHEMA_FIELD`, still read
LEGACY_SCHEMA_FIELDS = ("schema",)


class SchemaVersionError(ValueError):
    """A versioned document was written in a format this medseg does not read."""


def schema_version_of(data: Mapping[str, Any]) -> Any:
    """The format version recorded in ``data`` (:data:`SCHEMA_FIELD`, else a legacy spelling; None if absent)."""
    if SCHEMA_FIELD in data:
        return data[SCHEMA_FIELD]
    return next((data[k] for k in LEGACY_SCHEMA_FIELDS if k in data), None)


def check_schema_version(data: Any, path: Path | str, expected: int, what: str = "file") -> None:
    """Raise :class:`SchemaVersionError` unless ``data`` is a mapping recorded with format ``expected``.

    Args:
        data: the decoded document.
        path: the file it came from (named in the error).
        expected: the version this medseg reads.
        what: what the document is (``"plan"``, ``"bundle"`` ...), for the message.
    """
    found = schema_version_of(data) if isinstance(data, Mapping) else None
    if found != expected:
        raise SchemaVersionError(
            f"{path}: unsupported {what} {SCHEMA_FIELD} {found!r} (this medseg reads {expected}); "
            "rewrite it with this medseg version"
        )


def read_versioned_json(path: Path | str, expected: int, what: str, hint: str) -> dict[str, Any]:
    """The JSON document at ``path``, checked to be of format ``expected`` (:func:`check_schema_version`).

    Raises:
        FileNotFoundError: ``"<what> not found: <path> (<hint>)"``.
        SchemaVersionError: another format version.
    """
    if not Path(path).is_file():
        raise FileNotFoundError(f"{what} not found: {path} ({hint})")
    data = read_json(path)
    check_schema_version(data, path, expected, what)
    return dict(data)


@contextmanager
def atomic_path(path: Path | str, fsync: bool = True) -> Iterator[Path]:
    """A temporary sibling of ``path`` to write; renamed over ``path`` when the block ends without error.

    For writers that need a file name (``torch.save``, ``np.savez``, a CSV writer); the temporary
    file is removed when the block raises. ``fsync``: flush the file to disk before the rename.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        yield tmp
        if fsync:
            _fsync(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text_atomic(path: Path | str, text: str, exclusive: bool = False, mkdir: bool = False) -> bool:
    """Write ``text`` (UTF-8) to ``path`` atomically; with ``exclusive`` never replace an existing file.

    Args:
        mkdir: create the parent folders first.

    Returns:
        False when ``exclusive`` and ``path`` already existed (nothing written), else True.
    """
    path = Path(path)
    if mkdir:
        path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        if exclusive:
            try:
                os.link(tmp, path)  # atomic create-if-absent
            except FileExistsError:
                return False
            return True
        os.replace(tmp, path)
        return True
    finally:
        tmp.unlink(missing_ok=True)


def write_json(
    path: Path | str,
    data: Any,
    indent: int | None = 2,
    default: Callable[[Any], Any] | None = None,
    allow_nan: bool = True,
    newline: bool = False,
    mkdir: bool = True,
) -> Path:
    """Write ``data`` as JSON to ``path`` atomically (parent folders created); return ``path``.

    ``allow_nan=False`` makes NaN/inf an error (strict JSON); ``newline`` ends the file with one.
    """
    text = json.dumps(data, indent=indent, default=default, allow_nan=allow_nan)
    write_text_atomic(path, text + "\n" if newline else text, mkdir=mkdir)
    return Path(path)


def read_json(path: Path | str) -> Any:
    """The decoded JSON of ``path``."""
    return json.loads(Path(path).read_text(encoding="utf-8"))


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
