"""Which de-identification key an ingest uses, and the workspace's own key file.

The key of every keyed hash (patients, studies, cases, stand-in UIDs) comes from, in this order:

1. ``ingest.deid_secret`` (a config file, ``--set``, or the CLI's ``MEDSEG_DEID_SECRET``);
2. ``ingest.deid_key_file``: a file holding the key (surrounding whitespace ignored);
3. the workspace's own key file ``<workspace>/deid.key``: created on the first ingest with 32 random
   bytes (hex) and owner-only permissions (0600), and named once in the log when it is created.

There is no shared default key: two workspaces without a configured key get unrelated pseudonyms.
Keep the key file with the workspace: another key gives the same patients other ids.
"""

from __future__ import annotations

import logging
import os
import secrets
import stat
from pathlib import Path

from medseg.config import IngestConfig
from medseg.workspace import Workspace

log = logging.getLogger(__name__)

KEY_FILE = "deid.key"
MIN_LENGTH = 8


class KeyFileError(ValueError):
    """A configured key file is missing, unreadable or too short."""


def workspace_key_file(ws: Workspace) -> Path:
    return ws.root / KEY_FILE


def _read_key(path: Path) -> str:
    try:
        key = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise KeyFileError(f"de-identification key file {path} cannot be read ({exc.strerror or exc}); "
                           "check ingest.deid_key_file") from exc
    if len(key) < MIN_LENGTH:
        raise KeyFileError(f"de-identification key file {path} holds {len(key)} characters, at least "
                           f"{MIN_LENGTH} are needed")
    if path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning("de-identification key file %s is readable by other users; chmod 600 it", path)
    return key


def _create_key(path: Path) -> str:
    """Write a new random key to ``path`` (0600, never overwriting); another process may win the race."""
    key = secrets.token_hex(32)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return _read_key(path)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(key + "\n")
    log.warning("no de-identification key configured (ingest.deid_secret / ingest.deid_key_file): created the "
                "workspace's own random key %s (owner-only). Keep it with the workspace: another key gives the "
                "same patients other ids", path)
    return key


def resolve_deid_key(cfg: IngestConfig, ws: Workspace) -> str:
    """The key ingest uses (see module doc); creates the workspace key file when nothing is configured.

    Raises:
        KeyFileError: ``deid_key_file`` is set but missing, unreadable or shorter than 8 characters.
    """
    if cfg.deid_secret is not None:
        return cfg.deid_secret.get_secret_value()
    if cfg.deid_key_file is not None:
        return _read_key(Path(cfg.deid_key_file).expanduser())
    path = workspace_key_file(ws)
    return _read_key(path) if path.exists() else _create_key(path)
