"""CNN vs GAN disagreement, the QA task, and the metrics report led by the QA section."""

from __future__ import annotations

import numpy as np
from qa_cases import CASES, QAWorkspace, replace_prediction

from medseg.io.case_arrays import PRED_LABEL, open_label
from medseg.qa.record import QAReport, SignalKind
from medseg.stages.report import run_report_stage
from medseg.tasks.qa import qa_task


def _shift_gan_case(qa: QAWorkspace, case_id: str) -> None:
    store = qa.ws.prediction_dir("gan", "v1") / f"{case_id}.zarr"
    label = np.asarray(open_label(store, PRED_LABEL)[...])
    replace_prediction(store, np.roll(label, 25, axis=2))  # same volume, somewhere else


def test_a_case_the_models_disagree_on_is_flagged_and_ranked_first(qa_workspace: QAWorkspace) -> None:
    qa_workspace.predict("gan")
    _shift_gan_case(qa_workspace, "case3")
    predictions = {f: str(qa_workspace.ws.prediction_dir(f, "v1")) for f in ("cnn", "gan")}
    outcome = qa_task.fn(qa_workspace.cfg, predictions, "both")
    report = QAReport.load(qa_workspace.ws.reports_dir / "both" / "qa.json")
    first = report.cases[0]
    assert first.case_id == "case3" and first.flagged
    assert first.signals[0].kind == SignalKind.AGREEMENT and first.reasons[0].startswith("cnn vs gan Dice 0.")
    assert not any(c.flagged for c in report.cases[1:])  # agreeing models, volumes in range
    assert set(first.volumes_ml) == {"cnn", "gan"} and first.overlay is not None
    assert outcome.stats["flagged"] == 1 and outcome.stats["table"][0]["case"] == "case3"
    assert outcome.outputs[0].endswith("both/qa.md")


def test_the_metrics_report_leads_with_the_qa_section(qa_workspace: QAWorkspace) -> None:
    qa_workspace.predict("gan")
    _shift_gan_case(qa_workspace, "case1")
    predictions = {f: str(qa_workspace.ws.prediction_dir(f, "v1")) for f in ("cnn", "gan")}
    outcome = run_report_stage(qa_workspace.cfg, predictions, "labeled")  # no QA stage ran: the report runs it
    assert outcome.stats["qa_flagged"] == 1
    run_dir = qa_workspace.ws.reports_dir / "labeled"
    md = (run_dir / "report.md").read_text()
    assert md.index("## Prediction QA: 1 of 5 cases flagged") < md.index("## Comparison")
    qa_rows = md[md.index("## Prediction QA"):md.index("## Comparison")]
    assert qa_rows.index("| 1 | **case1** |") < min(qa_rows.index(f"| {c} |") for c in CASES if c != "case1")
    page = (run_dir / "report.html").read_text()
    assert page.index('<section id="prediction-qa">') < page.index("<h2>Comparison</h2>")
    assert (run_dir / "qa.json").is_file() and (run_dir / "qa.html").is_file()
