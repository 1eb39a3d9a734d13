"""Nightly retrain flow under the Prefect test server: first night trains, a quiet night does nothing,
a transient I/O error is retried, a corrupt champion bundle fails fast (champion kept, webhook told)."""

from __future__ import annotations

import errno
import json
import shutil
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest

from medseg.config import MedsegConfig
from medseg.config_loader import load_config
from medseg.stage_record import load_record
from medseg.workspace import Workspace

CONFIGS = Path(__file__).resolve().parents[2] / "configs"

#: CI-sized nightly: tiny budgets, non-overlapping windows (the flow, not the model, is under test)
TINY = [
    "train.max_epochs=1", "train.iterations_per_epoch=2", "train.val_every=1", "train.max_minutes=null",
    "train.filters=[8,16,32,64]", "preprocess.patch_size=[16,64,64]", "infer.overlap=0", "infer.sw_batch_size=4",
    "infer.dicom_seg=false", "split.test_fraction=0.3", "ops.retry_backoff_s=0", "ops.transient_retries=2",
]


def tiny_config(ws: Path, sources: list[Path], *extra: str) -> MedsegConfig:
    """The config object, as the CLI passes it: Prefect stores its dump, in which the key is redacted."""
    return load_config(CONFIGS / "demo.yaml", [*TINY, f"workspace={ws}", f"sources=[{','.join(map(str, sources))}]",
                                               *extra])


@pytest.fixture(scope="module")
def first_night(tmp_path_factory: pytest.TempPathFactory, prefect_harness: None) -> dict[str, Any]:
    from medseg.demo.archive import generate_demo_archive
    from medseg.flows.nightly import nightly_flow

    root = tmp_path_factory.mktemp("nightly")
    archive = root / "archive"
    generate_demo_archive(archive, cases=3, seed=11)
    config = tiny_config(root / "ws", [archive])
    result = nightly_flow(config=config, run_id="night-1")
    return {"root": root, "archive": archive, "config": config, "result": result}


@pytest.mark.slow
def test_first_night_trains_promotes_predicts_and_reports(first_night: dict[str, Any]) -> None:
    result = first_night["result"]
    ws = Workspace.at(first_night["root"] / "ws")
    assert result["status"] == "retrained"
    assert (ws.reports_dir / "night-1" / "operations.json").is_file()
    stages = {s["stage"]: s for s in result["stages"]}
    assert {"ingest", "preprocess", "train-cnn", "train-gan", "infer-cnn", "infer-gan"} <= set(stages)
    assert not any(stages[s]["skipped"] for s in ("ingest", "preprocess", "train-cnn", "train-gan"))
    for family in ("cnn", "gan"):
        assert stages[f"train-{family}"]["stats"]["promoted"] is True  # first model: no champion yet
        assert result["champions"][family] is not None and result["champions_before"][family] is None
        assert stages[f"infer-{family}"]["stats"]["predicted"] == 3  # every ingested case was pending
    rows = {r["stage"]: r for r in result["table"]}
    assert rows["ingest"]["files indexed"] == stages["ingest"]["stats"]["files_indexed"] > 0
    assert rows["preprocess"]["cases preprocessed"] == 3
    summary = Path(result["summary_md"]).read_text()
    assert "| infer-cnn | done |" in summary and "promoted: cnn, gan" in summary
    # prediction QA of every predicted case (labeled or not), before the report, which it leads
    assert stages["qa"]["stats"]["cases"] == 3 and result["qa"].endswith("night-1/qa.md")
    qa = json.loads((ws.reports_dir / "night-1" / "qa.json").read_text())
    assert [c["case_id"] for c in qa["cases"]] and set(qa["models"]) == {"cnn", "gan"}
    assert "## Prediction QA" in (ws.reports_dir / "night-1" / "report.md").read_text()
    # the metrics report covers the held-out test cases only, not the cases the models trained on
    from medseg.splits import Splits

    test_cases = set(Splits.load(ws.splits_path).test)
    assert result["report"] is not None and test_cases
    for family in ("cnn", "gan"):
        evaluated = json.loads((ws.reports_dir / "night-1" / family / "summary.json").read_text())["metric_per_case"]
        assert {c["case_id"] for c in evaluated} == test_cases


@pytest.mark.slow
def test_second_night_without_new_data_does_no_work(first_night: dict[str, Any]) -> None:
    from medseg.flows.nightly import nightly_flow

    ws = Workspace.at(first_night["root"] / "ws")
    before = {s: load_record(ws, s) for s in ("ingest", "preprocess", "train-cnn", "train-gan")}
    bundles = sorted(p.name for p in ws.models_dir.glob("*/*") if p.is_dir())
    result = nightly_flow(config=first_night["config"], run_id="night-2")
    assert result["status"] == "nothing new"
    assert result["message"].startswith("nothing new")
    assert [s["stage"] for s in result["stages"]] == ["ingest"] and result["stages"][0]["skipped"]
    for stage, rec in before.items():  # no stage ran again: records untouched
        assert load_record(ws, stage) == rec, stage
    assert sorted(p.name for p in ws.models_dir.glob("*/*") if p.is_dir()) == bundles
    assert "nothing new" in (ws.reports_dir / "night-2" / "operations.md").read_text()


@pytest.mark.slow
def test_transient_io_error_is_retried_and_the_run_succeeds(
    first_night: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    import medseg.tasks.ingest
    from medseg.flows.nightly import nightly_flow

    real = medseg.tasks.ingest.run_ingest_stage
    calls: list[int] = []

    def flaky(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:
            raise OSError(errno.EIO, "Input/output error (injected: NFS hiccup)")
        return real(*args, **kwargs)

    monkeypatch.setattr(medseg.tasks.ingest, "run_ingest_stage", flaky)
    state = nightly_flow(config=first_night["config"], run_id="night-3", return_state=True)
    assert state.is_completed(), state.message
    assert len(calls) == 2  # failed once, retried once
    assert state.result()["status"] == "nothing new"


@pytest.fixture
def webhook() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    got: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            got.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/medseg", got
    server.shutdown()


@pytest.mark.slow
def test_corrupt_champion_bundle_fails_fast_and_keeps_the_champion(
    first_night: dict[str, Any], tmp_path: Path, webhook: tuple[str, list[dict[str, Any]]]
) -> None:
    from medseg.demo.archive import generate_demo_archive
    from medseg.flows.nightly import nightly_flow

    ws_dir = tmp_path / "ws"
    shutil.copytree(first_night["root"] / "ws", ws_dir)
    ws = Workspace.at(ws_dir)
    pointer = ws.champion_path("cnn").read_text()
    version = json.loads(pointer)["version"]
    model = ws.model_family_dir("cnn") / version / "model.pt"
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0xFF
    model.write_bytes(bytes(data))
    new = tmp_path / "new-studies"  # new data arrived: the run would train if the check let it
    generate_demo_archive(new, cases=3, seed=12)
    url, posted = webhook
    config = tiny_config(ws_dir, [first_night["archive"], new], f"ops.webhook_url={url}")
    bundles = sorted(p.name for p in ws.models_dir.glob("*/*") if p.is_dir())

    state = nightly_flow(config=config, run_id="night-4", return_state=True)
    assert state.is_failed()
    assert "BundleError" in state.message and "is corrupt" in state.message and "sha256" in state.message
    assert ws.champion_path("cnn").read_text() == pointer  # the previous champion stays in place
    assert sorted(p.name for p in ws.models_dir.glob("*/*") if p.is_dir()) == bundles
    assert load_record(ws, "ingest") == load_record(Workspace.at(first_night["root"] / "ws"), "ingest")
    assert len(posted) == 1 and posted[0]["state"] == "Failed"
    assert posted[0]["error"].startswith("BundleError: champion cnn bundle")
    assert posted[0]["flow"] == "medseg-nightly-retrain"


@pytest.mark.slow
def test_a_night_whose_new_cases_drift_trains_but_holds_promotion(first_night: dict[str, Any], tmp_path: Path) -> None:
    """ops.drift_max_share: more new cases out of distribution than allowed -> the champions stay, the headline,
    the stage table and the metrics report say why, and drift.json/png sit next to the report."""
    from drift_series import ood_series

    from medseg.demo.archive import generate_demo_archive
    from medseg.drift.report import DriftReport
    from medseg.flows.nightly import nightly_flow

    ws_dir = tmp_path / "ws"
    shutil.copytree(first_night["root"] / "ws", ws_dir)
    ws = Workspace.at(ws_dir)
    champions = {f: ws.champion_path(f).read_text() for f in ("cnn", "gan")}
    new = tmp_path / "new-studies"
    generate_demo_archive(new, cases=3, seed=13)
    ood = tmp_path / "other-scanner"
    ood_series(ood, "thin", (16, 256, 256), (8.0, 0.6, 0.6))
    config = tiny_config(ws_dir, [first_night["archive"], new, ood], "ops.drift_max_share=0.1")
    result = nightly_flow(config=config, run_id="night-drift")
    assert result["status"] == "retrained"
    held = result["promotion_held"]
    assert held is not None and held.startswith("drift: ") and "> ops.drift_max_share 10%" in held
    assert "promoted: none (promotion held: drift: " in result["message"]
    stages = {s["stage"]: s for s in result["stages"]}
    assert stages["drift"]["stats"]["cases"] == 4 and stages["drift"]["stats"]["out_of_distribution"] >= 1
    for family in ("cnn", "gan"):
        assert stages[f"train-{family}"]["stats"]["promoted"] is False
        assert ws.champion_path(family).read_text() == champions[family]  # the champions stay
    rows = {r["stage"]: r for r in result["table"]}
    assert rows["drift"]["out of distribution"] == stages["drift"]["stats"]["out_of_distribution"]
    run_dir = ws.reports_dir / "night-drift"
    report = DriftReport.load(run_dir / "drift.json")
    assert any(f.feature == "spacing z" for c in report.cases for f in c.flags)
    assert (run_dir / "drift.png").is_file() and "promotion held" in (run_dir / "operations.md").read_text()
    if result["report"] is not None:  # the metrics report of the same run carries the drift section
        assert "Data drift: new cases vs the training cases" in Path(result["report"]).read_text()
