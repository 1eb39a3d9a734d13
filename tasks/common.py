"""Shared task settings: retry policy for transient failures and stage logging."""

from __future__ import annotations

import logging

from prefect.logging import get_run_logger
from prefect.tasks import exponential_backoff

from medseg.stages.outcome import StageOutcome

#: Backoff for transient errors (I/O, lost Dask workers): 10 s, 20 s, 40 s ... with jitter.
RETRY_DELAYS = exponential_backoff(backoff_factor=10)
RETRY_JITTER = 0.5


def log_outcome(outcome: StageOutcome) -> StageOutcome:
    try:
        logger: logging.Logger | logging.LoggerAdapter[logging.Logger] = get_run_logger()
    except Exception:
        logger = logging.getLogger("medseg")
    logger.info(outcome.headline())
    return outcome
