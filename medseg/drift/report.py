"""The drift report artifact: ``reports/<run_id>/drift.json`` (versioned) and its markdown, ``drift.md``.

See docs/ARCHITECTURE.md ("Drift report") for the contract.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from medseg.drift.rules import DriftFlag, DriftRules, Reference
from medseg.io.json_file import read_versioned_json, write_text_atomic
from medseg.preprocess.appearance import CaseAppearance

DRIFT_SCHEMA_VERSION = 1
DRIFT_JSON = "drift.json"
DRIFT_MD = "drift.md"
DRIFT_PNG = "drift.png"


class CaseDrift(BaseModel):
    """One checked case: its appearance and why it is out of distribution (no flags: it is not)."""

    case_id: str
    flags: list[DriftFlag] = Field(default_factory=list)
    appearance: CaseAppearance | None = Field(None, description="None when the store could not be read")
    error: str | None = Field(None, description="why the case could not be checked (counts as out of distribution)")

    @property
    def out_of_distribution(self) -> bool:
        return bool(self.flags) or self.error is not None

    def reasons(self) -> list[str]:
        return [f.reason for f in self.flags] + ([f"not checked: {self.error}"] if self.error else [])


class DriftReport(BaseModel):
    """New cases compared with the plan's training cases (:mod:`medseg.drift.rules`)."""

    schema_version: int = DRIFT_SCHEMA_VERSION
    run_id: str
    created_at: str = Field(description="UTC, ISO 8601")
    plan_hash: str = Field(description="the plan whose training cases are the reference")
    reference_from: str = Field(description="'fingerprint' (recorded appearances) or 'stores' (computed now)")
    rules: DriftRules
    reference: Reference
    cases: list[CaseDrift]
    notes: list[str] = Field(default_factory=list, description="what was not compared, and why")

    @property
    def flagged(self) -> list[str]:
        """Ids of the out-of-distribution cases."""
        return [c.case_id for c in self.cases if c.out_of_distribution]

    @property
    def share(self) -> float:
        """Share of the checked cases that are out of distribution (0 when none was checked)."""
        return len(self.flagged) / len(self.cases) if self.cases else 0.0

    def headline(self) -> str:
        return (f"{len(self.flagged)} of {len(self.cases)} new case(s) out of distribution "
                f"(reference: {len(self.reference.cases)} training case(s) of plan {self.plan_hash})")

    def table(self) -> list[dict[str, Any]]:
        """One row per case: case, out of distribution (yes/no), reasons."""
        return [{"case": c.case_id, "out of distribution": "yes" if c.out_of_distribution else "no",
                 "reasons": "; ".join(c.reasons()) or "-"} for c in self.cases]

    def save(self, path: Path) -> Path:
        write_text_atomic(Path(path), self.model_dump_json(indent=2), mkdir=True)
        return Path(path)

    @classmethod
    def load(cls, path: Path) -> DriftReport:
        return cls.model_validate(
            read_versioned_json(path, DRIFT_SCHEMA_VERSION, "drift report", "run `medseg drift` again")
        )


def drift_markdown(report: DriftReport, png_name: str | None = DRIFT_PNG) -> str:
    """``drift.md``: headline, per-case table, the plot, the reference ranges and the notes."""
    lines = [f"# Drift report {report.run_id}", "", report.headline() + ".", "",
             "| case | out of distribution | reasons |", "|---|---|---|"]
    lines += [f"| {r['case']} | {r['out of distribution']} | {r['reasons']} |" for r in report.table()]
    if png_name:
        lines += ["", f"![new cases over the training distribution]({png_name})"]
    lines += ["", f"## Reference ({len(report.reference.cases)} training cases, appearances from "
              f"{report.reference_from})", "", "| feature | unit | training | allowed |", "|---|---|---|---|"]
    lines += [f"| {r.feature} | {r.unit or 'raw'} | {r.low:.4g} to {r.high:.4g} | "
              f"{r.allowed_low:.4g} to {r.allowed_high:.4g} |" for r in report.reference.numeric]
    lines += [f"| {k} | | {', '.join(v) or '(not recorded)'} | the same |"
              for k, v in report.reference.categories.items()]
    if report.notes:
        lines += ["", "## Notes", "", *[f"- {n}" for n in report.notes]]
    return "\n".join(lines) + "\n"
