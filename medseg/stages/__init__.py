"""One function per pipeline stage: skip-if-unchanged, run the library code, record the outcome.

These are what ``tasks/`` wraps as Prefect tasks (one stage function per task). They take the
typed config, never arrays, and return a small :class:`~medseg.stages.outcome.StageOutcome`.
"""
