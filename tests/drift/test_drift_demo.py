"""The drift report on demo data: demo cases plus cases with another intensity scale and another grid
arrive in one ingest run; the report flags exactly the two generated ones, each with its reason."""

from __future__ import annotations

from pathlib import Path

import pytest
from drift_data import DriftWorkspace, drift_workspace

from medseg.drift.report import DriftReport
from medseg.io.volume_store import read_meta


@pytest.fixture(scope="module")
def dw(tmp_path_factory: pytest.TempPathFactory) -> DriftWorkspace:
    return drift_workspace(tmp_path_factory.mktemp("drift"))


def test_the_report_flags_exactly_the_generated_out_of_distribution_cases(dw: DriftWorkspace) -> None:
    from medseg.tasks.drift import drift_task

    outcome = drift_task.fn(dw.cfg, "drift-1", ingest_run=dw.ingest.run_id)
    assert len(dw.new_demo) == 3 and not set(dw.new_demo) & set(dw.training)
    assert outcome.stats["cases"] == 5  # only the cases this ingest run wrote, not the 8 training cases
    assert sorted(outcome.stats["flagged"]) == sorted(dw.ood.values())
    assert outcome.stats["out_of_distribution"] == 2 and outcome.stats["share"] == 0.4
    report = DriftReport.load(dw.ws.reports_dir / "drift-1" / "drift.json")
    by_id = {c.case_id: c for c in report.cases}
    intensity = by_id[dw.ood["intensity"]].flags
    assert intensity and all(f.feature.startswith("intensity") for f in intensity)
    assert any(f.feature == "intensity p01" and "outside training -1024 to" in f.reason for f in intensity)
    spacing = {f.feature: f.reason for f in by_id[dw.ood["spacing"]].flags}
    assert {"spacing z", "spacing y", "spacing x"} <= set(spacing)
    assert spacing["spacing z"].startswith("spacing z 8.00 mm outside training ")
    assert not any(f.startswith("intensity") for f in spacing)  # same HU, other grid
    assert report.reference.cases == sorted(dw.training) and report.reference_from == "fingerprint"
    assert report.reference.categories["manufacturer"] == ["medseg"]  # read from the DICOM headers
    run_dir = dw.ws.reports_dir / "drift-1"
    md = (run_dir / "drift.md").read_text()
    assert "2 of 5 new case(s) out of distribution" in md and "](drift.png)" in md
    assert (run_dir / "drift.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_acquisition_descriptors_reach_the_case_store(dw: DriftWorkspace) -> None:
    source = read_meta(dw.ws.volume_path(dw.new_demo[0]))["source"]
    assert source["manufacturer"] == "medseg" and source["model"] == "medseg demo phantom"
    assert "protocol" not in source  # the demo series have no ProtocolName


def test_the_fingerprint_records_every_training_case_appearance(dw: DriftWorkspace) -> None:
    from medseg.preprocess.appearance import case_appearance
    from medseg.preprocess.fingerprint import Fingerprint

    fp = Fingerprint.load(dw.ws.fingerprint_path)
    assert all(c.appearance is not None for c in fp.cases)
    first = fp.cases[0]
    assert first.appearance == case_appearance(dw.ws.volume_path(first.case_id))  # one sample, read two ways


def test_a_fingerprint_without_appearances_is_completed_from_the_stores(dw: DriftWorkspace, tmp_path: Path) -> None:
    """Fingerprints written before medseg recorded appearances still load; the reference is computed then."""
    import shutil

    from medseg.drift.check import training_appearances
    from medseg.preprocess.fingerprint import Fingerprint
    from medseg.workspace import Workspace

    ws = Workspace.at(tmp_path / "ws").ensure()
    ws.fingerprint_path.parent.mkdir(parents=True, exist_ok=True)
    old = Fingerprint.load(dw.ws.fingerprint_path).model_dump(mode="json")
    for case in old["cases"]:
        del case["appearance"]
        shutil.copytree(dw.ws.volume_path(case["case_id"]), ws.volume_path(case["case_id"]))
    Fingerprint.model_validate(old).save(ws.fingerprint_path)
    recorded, _, _ = training_appearances(dw.ws, set())
    computed, source, notes = training_appearances(ws, set())
    assert source == "stores" and not notes
    assert computed == recorded


def test_the_metrics_report_of_the_same_run_leads_with_the_drift_section(dw: DriftWorkspace) -> None:
    from eval_summaries import shifted_summary

    from medseg.drift.section import run_drift_section
    from medseg.report.build import build_report
    from medseg.tasks.drift import drift_task

    run_dir = dw.ws.reports_dir / "drift-2"
    assert run_drift_section(run_dir) is None  # no drift check in this run yet
    drift_task.fn(dw.cfg, "drift-2", ingest_run=dw.ingest.run_id)
    section = run_drift_section(run_dir)
    assert section is not None and section.lead and section.images[0][0] == run_dir / "drift.png"
    bold = {row[0][0] for row in section.rows if row[0][1]}
    assert bold == set(dw.ood.values())
    files = build_report(run_dir, {"cnn": shifted_summary([0, 1], "v1")}, {}, "t", sections=[section])
    md, html = files.markdown, files.html_path.read_text()
    assert md.index("Data drift") < md.index("## Comparison")  # out-of-distribution cases lead the report
    assert "2 of 5 new case(s) out of distribution" in md and '<section id="drift">' in html


def test_medseg_drift_checks_the_newest_ingest_run_or_the_given_cases(dw: DriftWorkspace) -> None:
    from typer.testing import CliRunner

    from medseg.cli.main import app

    runner = CliRunner()
    result = runner.invoke(app, ["drift", "-w", str(dw.ws.root)], env={"COLUMNS": "300"})
    assert result.exit_code == 0, result.output
    assert "2 of 5 case(s) out of distribution" in result.output and "drift.md" in result.output
    assert dw.ood["spacing"] in result.output
    one = runner.invoke(app, ["drift", "-w", str(dw.ws.root), "--case", dw.training[0], "--set",
                              "ops.drift_geometry_factor=1.01"], env={"COLUMNS": "300"})
    assert one.exit_code == 0, one.output
    assert "case(s) out of distribution" in one.output and dw.training[0] in one.output
