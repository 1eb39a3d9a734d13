"""Check new cases against the plan's training cases and write the drift report files.

The reference is the fingerprint's cases (``preprocessed/fingerprint.json``: the labeled cases the plan
was made from), less the cases being checked. Their appearances are the ones the fingerprint recorded;
a fingerprint of an older medseg version has none, and they are computed from the training cases'
stores instead (``reference_from: "stores"``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path

from medseg.drift.plot import drift_png
from medseg.drift.report import DRIFT_JSON, DRIFT_MD, DRIFT_PNG, CaseDrift, DriftReport, drift_markdown
from medseg.drift.rules import DriftRules, build_reference, check_case
from medseg.io.json_file import write_text_atomic
from medseg.io.volume_store import IncompleteStoreError, is_complete
from medseg.preprocess.appearance import CaseAppearance, case_appearance
from medseg.preprocess.fingerprint import Fingerprint
from medseg.workspace import Workspace


def training_appearances(ws: Workspace, exclude: set[str]) -> tuple[list[CaseAppearance], str, list[str]]:
    """The appearances of the fingerprint's cases not in ``exclude``.

    Returns:
        ``(appearances, "fingerprint" | "stores" | "fingerprint+stores", notes)``.
    """
    fp = Fingerprint.load(ws.fingerprint_path)
    notes: list[str] = []
    overlap = sorted(c.case_id for c in fp.cases if c.case_id in exclude)
    if overlap:
        notes.append(f"{len(overlap)} checked case(s) are training cases already ({', '.join(overlap[:5])}"
                     f"{' ...' if len(overlap) > 5 else ''}): each is compared with the other training cases")
    kept = [c for c in fp.cases if c.case_id not in exclude]
    recorded = [c.appearance for c in kept if c.appearance is not None]
    computed: list[CaseAppearance] = []
    for c in (c for c in kept if c.appearance is None):
        path = ws.volume_path(c.case_id)
        if is_complete(path):
            computed.append(case_appearance(path))
        else:
            notes.append(f"training case {c.case_id} has no volume store any more: left out of the reference")
    source = "stores" if not recorded else "fingerprint" if not computed else "fingerprint+stores"
    return recorded + computed, source, notes


def check_drift(ws: Workspace, case_ids: Sequence[str], rules: DriftRules, run_id: str,
                plan_hash: str) -> DriftReport:
    """Compare the ingested stores of ``case_ids`` with the training cases (see module doc).

    A case whose store cannot be read is listed with its error and counts as out of distribution.

    Raises:
        FileNotFoundError: no fingerprint (run ``medseg preprocess`` first).
        ValueError: no training case left to compare with.
    """
    training, source, notes = training_appearances(ws, set(case_ids))
    reference = build_reference(training, rules)
    cases: list[CaseDrift] = []
    for case_id in case_ids:
        try:
            appearance = case_appearance(ws.volume_path(case_id))
        except (OSError, ValueError, KeyError, IncompleteStoreError) as exc:
            cases.append(CaseDrift(case_id=case_id, error=f"{type(exc).__name__}: {exc}"))
            continue
        cases.append(CaseDrift(case_id=case_id, flags=check_case(appearance, reference, rules),
                               appearance=appearance))
    notes += [f"{c.value}: not recorded for any training case (NIfTI/NRRD data, or stores ingested before medseg "
              "read it): not compared" for c in rules.categories if not reference.categories.get(c.value)]
    return DriftReport(run_id=run_id, created_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                       plan_hash=plan_hash, reference_from=source, rules=rules, reference=reference, cases=cases,
                       notes=notes)


def write_drift(report: DriftReport, run_dir: Path) -> list[Path]:
    """Write ``drift.json``, ``drift.png`` and ``drift.md`` into ``run_dir`` (each atomically).

    Returns:
        The three paths, ``drift.json`` first.
    """
    run_dir = Path(run_dir)
    json_path = report.save(run_dir / DRIFT_JSON)
    png = drift_png(report, run_dir / DRIFT_PNG)
    md = run_dir / DRIFT_MD
    write_text_atomic(md, drift_markdown(report, png.name), mkdir=True)
    return [json_path, png, md]
