"""Shared task settings: retry policy for transient failures and stage logging.

Retries use exponential backoff with jitter and only happen for *transient* errors
(:func:`medseg.ops.errors.is_transient`: I/O errors, lost Dask workers, timeouts); a permanent
error (bad config, corrupt model bundle, missing input) fails the task at once with one message.
"""

from __future__ import annotations

import logging
from typing import Any, TypeVar

from prefect import Task
from prefect.artifacts import create_markdown_artifact
from prefect.client.schemas.objects import TaskRun
from prefect.context import FlowRunContext, TaskRunContext
from prefect.logging import get_run_logger
from prefect.states import State
from prefect.tasks import exponential_backoff

from medseg.ops.errors import describe, is_transient
from medseg.stages.outcome import StageOutcome

#: Backoff for transient errors (I/O, lost Dask workers): 10 s, 20 s, 40 s ... with jitter.
RETRY_DELAYS = exponential_backoff(backoff_factor=10)
RETRY_JITTER = 0.5

T = TypeVar("T", bound=Task[Any, Any])


def run_logger() -> logging.Logger | logging.LoggerAdapter[logging.Logger]:
    try:
        return get_run_logger()
    except Exception:
        return logging.getLogger("medseg")


def in_prefect_run() -> bool:
    """Whether this code runs inside a Prefect flow or task run (artifacts need one; ``task.fn()`` has none)."""
    return TaskRunContext.get() is not None or FlowRunContext.get() is not None


def log_outcome(outcome: StageOutcome) -> StageOutcome:
    """Log the stage's headline; its warnings (e.g. training stopped by the time cap) are logged at
    WARNING level and published as a Markdown artifact, so they stand out in the Prefect UI."""
    log = run_logger()
    log.info(outcome.headline())
    for warning in outcome.warnings:
        log.warning("%s: %s", outcome.stage, warning)
    if outcome.warnings and in_prefect_run():
        lines = [f"# Warnings: {outcome.stage}", "", *[f"- **warning**: {w}" for w in outcome.warnings]]
        try:
            create_markdown_artifact(markdown="\n".join(lines), description=f"{outcome.stage}: warnings")
        except Exception:  # noqa: BLE001 - artifacts are best effort (no API / no run context)
            pass
    return outcome


def retry_on_transient(task: Task[Any, Any], task_run: TaskRun, state: State[Any]) -> bool:
    """``retry_condition_fn`` of every medseg task: retry transient errors only (see module doc)."""
    try:
        exc = state.result(raise_on_failure=False)
    except Exception as err:  # noqa: BLE001 - the result itself could not be loaded
        exc = err
    if not isinstance(exc, BaseException):
        return True
    transient = is_transient(exc)
    log = logging.getLogger("medseg.retry")
    if transient:
        log.warning("%s failed with a transient error, retrying with backoff: %s", task_run.name, describe(exc))
    else:
        log.error("%s failed with a permanent error (no retry): %s", task_run.name, describe(exc))
    return transient


def retry_delays(retries: int, backoff_s: float) -> list[float]:
    """``backoff_s``, 2×, 4× ... (``retries`` values); Prefect adds ``RETRY_JITTER`` jitter."""
    return [backoff_s * 2**i for i in range(max(retries, 1))]


def with_transient_retries(task: T, retries: int = 3, backoff_s: float = 10.0) -> T:
    """``task`` retrying transient errors ``retries`` times with exponential backoff + jitter."""
    return task.with_options(  # type: ignore[return-value]
        retries=retries,
        retry_delay_seconds=retry_delays(retries, backoff_s),
        retry_jitter_factor=RETRY_JITTER,
        retry_condition_fn=retry_on_transient,
    )
