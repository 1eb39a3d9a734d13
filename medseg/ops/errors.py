"""Which failures are worth a retry (transient) and which must fail the run at once (permanent).

Transient: I/O hiccups (``OSError`` such as EIO, stale NFS handles, timeouts), lost Dask workers
(``CommClosedError``, ``KilledWorker``), ``TimeoutError``, SQLite "database is locked" and
:class:`TransientError`. Permanent: invalid configuration (pydantic ``ValidationError``,
``ConfigError``), corrupt model bundles (``BundleError``), missing inputs
(``FileNotFoundError`` / ``NotADirectoryError`` / ``PermissionError``), catalog schema mismatches
and anything not known to be transient. The exception and its ``__cause__`` / ``__context__``
chain are inspected; a permanent error anywhere in the chain wins.
"""

from __future__ import annotations

import sqlite3
import sys

from distributed.comm.core import CommClosedError
from distributed.scheduler import KilledWorker
from pydantic import ValidationError

from medseg.config_loader import ConfigError
from medseg.io.catalog import CatalogSchemaError


class TransientError(RuntimeError):
    """Raise (or chain) this to mark a failure as worth retrying."""


class PermanentError(RuntimeError):
    """Raise (or chain) this to fail a run without retries."""


PERMANENT: tuple[type[BaseException], ...] = (
    PermanentError,
    ValidationError,
    ConfigError,
    CatalogSchemaError,
    FileNotFoundError,
    NotADirectoryError,
    IsADirectoryError,
    PermissionError,
)
TRANSIENT: tuple[type[BaseException], ...] = (
    TransientError,
    CommClosedError,
    KilledWorker,
    TimeoutError,
    ConnectionError,
    OSError,
)


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    cur: BaseException | None = exc
    while cur is not None and all(cur is not s for s in seen) and len(seen) < 16:
        seen.append(cur)
        cur = cur.__cause__ or cur.__context__
    return seen


def _is_locked_db(exc: BaseException) -> bool:
    return isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc).lower()


def _permanent_types() -> tuple[type[BaseException], ...]:
    """:data:`PERMANENT` plus ``BundleError`` when its module is loaded (importing it would pull in torch;
    when it is not loaded, no ``BundleError`` can exist)."""
    bundle = sys.modules.get("medseg.io.bundle")
    extra = getattr(bundle, "BundleError", None)
    return (*PERMANENT, extra) if isinstance(extra, type) else PERMANENT


def is_transient(exc: BaseException) -> bool:
    """True when ``exc`` (or its cause chain) is a transient failure and none of it is permanent.

    ``BundleError`` (corrupt model bundle) is permanent.
    """
    chain = _chain(exc)
    permanent = _permanent_types()
    if any(isinstance(e, permanent) for e in chain):
        return False
    return any(isinstance(e, TRANSIENT) or _is_locked_db(e) for e in chain)


def describe(exc: BaseException) -> str:
    """One line for logs, webhooks and the terminal: ``ExceptionType: message`` (the first line only)."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
