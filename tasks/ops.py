"""Prefect tasks for operations: champion checks before a nightly run and stage-table artifacts."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from prefect import task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from medseg.config import MedsegConfig
from medseg.tasks.common import in_prefect_run, run_logger
from medseg.workspace import Workspace


def artifact_key(*parts: str) -> str:
    """A valid artifact key (lowercase letters, digits and dashes) from ``parts``."""
    text = "-".join(parts).lower()
    return "".join(c if c.isalnum() else "-" for c in text).strip("-") or "medseg"


@task(name="check-champions", tags=["medseg"], retries=0, cache_policy=NO_CACHE)
def check_champions_task(cfg: MedsegConfig) -> dict[str, str | None]:
    """Load every champion bundle; a corrupt one fails the run here, before anything changes."""
    from medseg.ops.nightly import verify_champions  # imports torch: only where champions are checked

    found = verify_champions(Workspace.at(cfg.workspace), list(cfg.train.models))
    run_logger().info("champions verified: %s", found)
    return found


def publish_table(key: str, rows: Sequence[dict[str, Any]], description: str, markdown: str | None = None) -> None:
    """Table artifact ``key`` (and markdown artifact ``key-summary``); best effort. Outside a flow or task run
    (``task.fn()``, scripts) nothing is published: creating an artifact there would start a temporary server."""
    if not in_prefect_run():
        return
    try:
        create_table_artifact(table=[dict(r) for r in rows], key=key, description=description)
        if markdown is not None:
            create_markdown_artifact(markdown=markdown, key=f"{key}-summary", description=description)
    except Exception as exc:  # noqa: BLE001 - artifacts are best effort; files are the source of truth
        run_logger().debug("artifact %s not published: %s", key, exc)
