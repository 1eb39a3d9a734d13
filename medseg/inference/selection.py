"""Which cases to predict: the held-out test split, or every ingested case not yet predicted by a model."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from medseg.io.volume_store import is_complete, read_meta
from medseg.splits import Splits
from medseg.workspace import Workspace

#: ``"test"`` = held-out split, ``"pending"`` = ingested cases without a prediction from the model,
#: or an explicit list of case ids.
CaseSelection = Literal["test", "pending"] | Sequence[str]


def ingested_case_ids(ws: Workspace) -> list[str]:
    """Case ids of every ingested image series with a complete volume store, from the catalog (sorted).

    Raises:
        FileNotFoundError: the workspace has no catalog yet.
    """
    if not ws.catalog_path.is_file():
        raise FileNotFoundError(f"no catalog at {ws.catalog_path}: run `medseg ingest` first")
    from medseg.io.catalog import Catalog

    return [c.case_id for c in Catalog(ws.catalog_path, create=False).cases() if is_complete(Path(c.volume_path))]


def has_prediction(prediction_dir: Path, case_id: str, family: str, version: str) -> bool:
    """True when ``prediction_dir/<case_id>.zarr`` is complete and was made by ``family``/``version``."""
    store = Path(prediction_dir) / f"{case_id}.zarr"
    if not is_complete(store):
        return False
    source = read_meta(store).get("source", {})
    return bool(source.get("model_family") == family and source.get("model_version") == version)


def pending_case_ids(ws: Workspace, family: str, version: str) -> list[str]:
    """Ingested cases (catalog) without a finished prediction by model ``family``/``version`` (sorted).

    Args:
        ws: workspace.
        family: model family, e.g. "cnn".
        version: bundle version (e.g. the champion's: ``Path(champion(ws, family)).name``).
    """
    out_dir = ws.prediction_dir(family, version)
    return [c for c in ingested_case_ids(ws) if not has_prediction(out_dir, c, family, version)]


def select_cases(ws: Workspace, selection: CaseSelection, family: str, version: str) -> list[str]:
    """Resolve a :data:`CaseSelection` to case ids.

    Raises:
        ValueError: an unknown selection word.
        FileNotFoundError: ``"test"`` without splits.json, ``"pending"`` without a catalog.
    """
    if isinstance(selection, str):
        if selection == "test":
            if not ws.splits_path.is_file():
                raise FileNotFoundError(
                    f"no splits at {ws.splits_path}: run `medseg preprocess` first, or select cases='pending'"
                )
            return list(Splits.load(ws.splits_path).test)
        if selection == "pending":
            return pending_case_ids(ws, family, version)
        raise ValueError(f"case selection must be 'test', 'pending' or a list of case ids, got {selection!r}")
    return [str(c) for c in selection]
