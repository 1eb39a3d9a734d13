"""Transient vs permanent failure classification (drives the tasks' retry_condition_fn)."""

from __future__ import annotations

import errno
import sqlite3

import pytest
from distributed.comm.core import CommClosedError
from distributed.scheduler import KilledWorker
from pydantic import ValidationError

from medseg.config import MedsegConfig
from medseg.config_loader import ConfigError
from medseg.io.bundle import BundleError
from medseg.ops.errors import TransientError, describe, is_transient


def _validation_error() -> ValidationError:
    with pytest.raises(ValidationError) as info:
        MedsegConfig.model_validate({"train": {"max_epochs": -1}})
    return info.value


@pytest.mark.parametrize(
    "exc",
    [
        OSError(errno.EIO, "Input/output error"),
        TimeoutError("scheduler did not answer"),
        CommClosedError("in <TCP>: Stream is closed"),
        KilledWorker("task", "tcp://127.0.0.1:1234", 3),
        TransientError("try again"),
        sqlite3.OperationalError("database is locked"),
        ConnectionResetError("peer reset"),
    ],
)
def test_transient_errors_are_retried(exc: BaseException) -> None:
    assert is_transient(exc)


@pytest.mark.parametrize(
    "exc",
    [
        ConfigError("invalid config: field 'train.max_epochs'"),
        BundleError("model.pt is corrupt"),
        FileNotFoundError("DICOM source not found"),
        PermissionError("denied"),
        ValueError("bad value"),
        RuntimeError("preprocessing failed for every case"),
        sqlite3.OperationalError("no such table: files"),
    ],
)
def test_permanent_errors_fail_fast(exc: BaseException) -> None:
    assert not is_transient(exc)


def test_pydantic_validation_error_is_permanent() -> None:
    assert not is_transient(_validation_error())


def test_permanent_cause_wins_over_transient_wrapper() -> None:
    try:
        try:
            raise BundleError("checksum mismatch")
        except BundleError as inner:
            raise OSError(errno.EIO, "while loading") from inner
    except OSError as outer:
        assert not is_transient(outer)
    try:
        try:
            raise CommClosedError("lost worker")
        except CommClosedError as inner:
            raise RuntimeError("batch failed") from inner
    except RuntimeError as outer:
        assert is_transient(outer)


def test_describe_is_one_line() -> None:
    assert describe(BundleError("a\nb")) == "BundleError: a"
    assert describe(TimeoutError()) == "TimeoutError"
