"""The one walk over ingest sources: every regular file once, and every entry that cannot be one.

Both the ingest scan (:func:`medseg.ingest.file_index.scan_sources`) and the ingest stage's input key
(:func:`medseg.stages.ingest.source_listing_key`) list the sources with :func:`walk_sources`, so
they agree on what a source holds, whether it is a folder or a single file.

Symlinked folders are followed, each real folder once (``(st_dev, st_ino)`` of every folder
entered is remembered), so link loops such as ``a -> .`` terminate. Paths are reported as found
under the source, not resolved.

Entries that are not ingestible files are *reported*, not skipped silently (see
:class:`SourceProblem`): folders that cannot be listed, dangling links, FIFOs, sockets and device
files (never opened: reading a FIFO blocks, ``/dev/zero`` never ends), and names that are not valid
UTF-8 (the catalog stores paths as UTF-8 text; such a name is shown with ``\\xNN`` escapes).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from medseg.io.reasons import Reason

#: ``(absolute path, size in bytes, mtime_ns)`` of one regular file
SourceFile = tuple[str, int, int]


@dataclass(frozen=True)
class SourceProblem:
    """An entry under a source that is not ingested, and why (a quarantine row of the run)."""

    path: str  # printable: non-UTF-8 bytes as \\xNN escapes
    reason: Reason
    message: str

    def quarantine_row(self, run_id: str) -> dict[str, str | None]:
        return {"path": self.path, "series_uid": None, "case_id": None, "reason": self.reason.value,
                "message": self.message, "run_id": run_id}


def printable_path(path: str) -> str:
    """``path`` as valid UTF-8 text: undecodable bytes (kept by Python as surrogates) become ``\\xNN``."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def _utf8(name: str) -> bool:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _special_kind(mode: int) -> str | None:
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device file"
    return None


def _bad_name(path: str, what: str) -> SourceProblem:
    return SourceProblem(
        printable_path(path), Reason.BAD_FILE_NAME,
        f"{printable_path(path)}: {what} name is not valid UTF-8 (shown with \\x escapes); "
        "rename it (e.g. `convmv -f latin1 -t utf8`) to ingest it",
    )


def _file_entry(path: str, problems: list[SourceProblem]) -> SourceFile | None:
    """The listing entry of one non-folder name, or None (a problem was reported, if any)."""
    if not _utf8(path):
        problems.append(_bad_name(path, "file"))
        return None
    try:
        st = os.stat(path)
    except FileNotFoundError:
        if os.path.islink(path):
            problems.append(SourceProblem(path, Reason.DANGLING_LINK,
                                          f"{path}: symbolic link to {os.readlink(path)!r}, which does not exist"))
        return None  # else: removed while the source was walked
    except OSError as exc:
        problems.append(SourceProblem(path, Reason.UNREADABLE_PATH,
                                      f"{path}: cannot be examined ({exc.strerror or exc}); check its permissions"))
        return None
    if stat.S_ISREG(st.st_mode):
        return path, st.st_size, st.st_mtime_ns
    kind = _special_kind(st.st_mode)
    if kind is not None:
        problems.append(SourceProblem(path, Reason.SPECIAL_FILE,
                                      f"{path}: {kind}, not a regular file; not read (remove it from the source)"))
    return None


def walk_sources(sources: list[Path], problems: list[SourceProblem] | None = None) -> Iterator[SourceFile]:
    """Yield every regular file under ``sources`` (folders or single files), sorted within each folder.

    Args:
        sources: folders or files; each is resolved first (``~`` expanded, links followed).
        problems: when given, every entry that is not ingested for a reason the user can fix is
            appended to it (see the module doc).

    Raises:
        FileNotFoundError: a source does not exist.
    """
    found = problems if problems is not None else []
    for src in sources:
        root = Path(src).expanduser().resolve()
        if root.is_file() or (root.exists() and not root.is_dir()):
            entry = _file_entry(str(root), found)
            if entry is not None:
                yield entry
            continue
        if not root.is_dir():
            raise FileNotFoundError(f"DICOM source {src} does not exist (check `sources` in the config)")
        yield from _walk_folder(str(root), found)


def _walk_folder(root: str, problems: list[SourceProblem]) -> Iterator[SourceFile]:
    visited: set[tuple[int, int]] = set()

    def unlistable(exc: OSError) -> None:
        where = printable_path(exc.filename or root)
        problems.append(SourceProblem(where, Reason.UNREADABLE_PATH,
                                      f"{where}: folder cannot be listed ({exc.strerror or exc}); "
                                      "its files are not ingested (check its permissions)"))

    for dirpath, dirnames, filenames in os.walk(root, onerror=unlistable, followlinks=True):
        try:
            st_dir = os.stat(dirpath)
        except OSError as exc:
            unlistable(exc)
            dirnames.clear()
            continue
        if (st_dir.st_dev, st_dir.st_ino) in visited:  # symlink loop / folder linked twice
            dirnames.clear()
            continue
        visited.add((st_dir.st_dev, st_dir.st_ino))
        bad = [d for d in dirnames if not _utf8(d)]
        problems.extend(_bad_name(os.path.join(dirpath, d), "folder") for d in sorted(bad))
        dirnames[:] = sorted(d for d in dirnames if _utf8(d))
        for name in sorted(filenames):
            entry = _file_entry(os.path.join(dirpath, name), problems)
            if entry is not None:
                yield entry
