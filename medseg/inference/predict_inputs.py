"""``medseg predict``: predict every ingested case of the given inputs into one output folder, named per study.

The cases come from :func:`medseg.inference.input_cases.inventory` (which ingested case came from
which input, and what each input held that yields no prediction); each case is predicted by
:func:`medseg.inference.predict.write_case_prediction`, the same code as ``medseg infer``, with the
outputs named after the study (:func:`medseg.inference.input_cases.name_outputs`)::

    OUT/<name>.nii.gz     label map, affine = the input's (``nifti``)
    OUT/<name>.seg.dcm    DICOM SEG referencing the source series (``dicom-seg``; DICOM inputs only)
    OUT/<name>.zarr       OME-Zarr prediction store: image + labels/pred (``zarr``)
    OUT/predict.json      what was predicted, skipped and why, and each case's QA flags (:class:`PredictSummary`)

A case is skipped when it lacks an input channel of the model; a case that fails is reported and the
others still run. With a Dask client the cases fan out over its workers (:func:`predict_input_task`
per case, the model loaded once per worker; :mod:`medseg.inference.layout` says when). Each predicted case
is scored for QA as it is written (:func:`medseg.qa.assess.assess_measured`: its volumes against the label
volumes of ``cfg.workspace``'s fingerprint, and the model's confidence); a flagged case is still a
prediction, not a problem. :attr:`PredictSummary.problems` lists why the command should exit non-zero: an
input that yields no prediction, or a failed case.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

import torch
from distributed import Client
from pydantic import BaseModel, Field

from medseg.config import MedsegConfig
from medseg.inference.case_tasks import CaseRun, fan_out_cases, on_worker, peak_rss_mib
from medseg.inference.input_cases import InputCase, InputInventory
from medseg.inference.model_cache import BundleRef, cached_bundle
from medseg.inference.outputs import CaseOutputs
from medseg.inference.predict import write_case_prediction
from medseg.io.json_file import write_json
from medseg.preprocess.case import MissingChannelError
from medseg.preprocess.fanout import Outcome
from medseg.qa.assess import assess_measured, workspace_training_volumes
from medseg.qa.volumes import VolumeRange
from medseg.training.bundle import ModelBundle, load_bundle
from medseg.workspace import Workspace

log = logging.getLogger(__name__)

SUMMARY_FILE = "predict.json"
SCHEMA_VERSION = 1
Progress = Callable[[dict[str, Any]], None]


class OutputFormat(StrEnum):
    """An output of ``medseg predict --format``."""

    DICOM_SEG = "dicom-seg"
    NIFTI = "nifti"
    ZARR = "zarr"


DEFAULT_FORMATS = (OutputFormat.NIFTI, OutputFormat.DICOM_SEG)


def parse_formats(text: str | Sequence[str]) -> list[OutputFormat]:
    """``"nifti,dicom-seg"`` (or a list of such items) as formats, in the order given, without repeats.

    Raises:
        ValueError: an unknown or empty format; the message names it and the choices.
    """
    items = [text] if isinstance(text, str) else list(text)
    names = [n.strip().lower() for item in items for n in item.split(",")]
    choices = ", ".join(f.value for f in OutputFormat)
    out: list[OutputFormat] = []
    for name in names:
        try:
            fmt = OutputFormat(name)
        except ValueError:
            raise ValueError(f"unknown output format {name!r} in --format {','.join(items)!r}: "
                             f"choose from {choices} (comma-separated)") from None
        if fmt not in out:
            out.append(fmt)
    if not out:
        raise ValueError(f"--format names no output format: choose from {choices}")
    return out


class PredictRow(BaseModel):
    """One line of the summary: a predicted or failed case, or entries of an input skipped for one reason."""

    input: str
    status: Literal["predicted", "skipped", "failed"]
    name: str = Field("", description="output base name (predicted/failed cases)")
    case_id: str = ""
    reason: str = Field("", description="reason code of a skip or failure")
    detail: str = Field("", description="files written, or what was skipped and why")
    count: int = Field(1, description="entries this row stands for")
    files: list[str] = Field(default_factory=list)
    qa_score: float | None = Field(None, description="QA score of a predicted case (>= 1: flagged, see qa_reasons)")
    qa_flagged: bool = Field(False, description="the QA says 'look at this'")
    qa_reasons: list[str] = Field(default_factory=list, description="why it is flagged, strongest first")


class PredictSummary(BaseModel):
    """What :func:`predict_inventory` did (also ``OUT/predict.json``)."""

    schema_version: int = SCHEMA_VERSION
    model: dict[str, str]
    output_dir: str
    formats: list[str]
    inputs: list[str]
    rows: list[PredictRow] = Field(default_factory=list)
    problems: list[str] = Field(default_factory=list, description="why the command exits non-zero (empty: success)")
    qa_notes: list[str] = Field(default_factory=list, description="QA signals that could not be measured, and why")
    seconds: float = 0.0

    def count(self, status: str) -> int:
        return sum(r.count for r in self.rows if r.status == status)


def case_outputs(out_dir: Path, case: InputCase, formats: Sequence[OutputFormat]) -> CaseOutputs:
    """The files of one case in the predict layout (see the module doc)."""
    return CaseOutputs(
        folder=out_dir,
        nifti=out_dir / f"{case.name}.nii.gz" if OutputFormat.NIFTI in formats else None,
        zarr=out_dir / f"{case.name}.zarr" if OutputFormat.ZARR in formats else None,
        dicom_seg=OutputFormat.DICOM_SEG in formats and case.from_dicom,
        seg_file=out_dir / f"{case.name}.seg.dcm",
    )


def predict_inventory(
    ws: Workspace,
    cfg: MedsegConfig,
    bundle: ModelBundle | BundleRef,
    inv: InputInventory,
    cases: list[InputCase],
    out_dir: Path,
    formats: Sequence[OutputFormat],
    device: torch.device | str = "cpu",
    progress: Progress | None = None,
    client: Client | None = None,
) -> PredictSummary:
    """Predict ``cases`` (named, from ``inv``) into ``out_dir``; report the skips of ``inv``; write ``predict.json``.

    Args:
        ws: the workspace the inputs were ingested into.
        cfg: ``cfg.infer`` (sliding window, postprocessing, spill) as for ``medseg infer``.
        bundle: the loaded model bundle (in this process), or the bundle's folder (with ``client``).
        inv: the inputs' inventory (:func:`medseg.inference.input_cases.inventory`).
        cases: its cases with their output names (:func:`medseg.inference.input_cases.name_outputs`).
        out_dir: output folder (created).
        formats: outputs to write.
        device: where the network runs (in this process; workers resolve ``cfg.train.device``).
        progress: called with ``{"event": "case", "case_id", "status", "done", "total"}`` per case.
        client: fan the cases out over this Dask client's workers (None: one after the other here).
    """
    start = time.perf_counter()
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = PredictSummary(model={"family": bundle.family, "version": bundle.version, "bundle": str(bundle.path)},
                             output_dir=str(out_dir), formats=[f.value for f in formats], inputs=list(inv.sources))
    training, summary.qa_notes = workspace_training_volumes(Workspace.at(cfg.workspace))
    if client is not None:
        summary.rows.extend(_predict_on_cluster(ws, cfg, bundle, cases, out_dir, formats, client, progress, training))
    else:
        dev = torch.device(device)
        if isinstance(bundle, BundleRef):
            bundle = load_bundle(bundle.path, device=dev)
        for n, case in enumerate(cases, start=1):
            row = _predict_one(ws, cfg, bundle, case, out_dir, formats, dev, training)
            summary.rows.append(row)
            if progress is not None:
                progress({"event": "case", "case_id": case.case_id, "status": row.status, "done": n,
                          "total": len(cases)})
    summary.rows.extend(PredictRow(input=s.source, status="skipped", reason=s.reason, count=s.count,
                                   detail=s.message + (f" (and {s.count - 1} more like it)" if s.count > 1 else ""))
                        for s in inv.skips)
    summary.rows.sort(key=lambda r: (inv.sources.index(r.input), r.status != "predicted", r.name))
    summary.problems = _problems(summary)
    summary.seconds = round(time.perf_counter() - start, 3)
    write_json(out_dir / SUMMARY_FILE, summary.model_dump(mode="json"))
    return summary


def _predict_one(ws: Workspace, cfg: MedsegConfig, bundle: ModelBundle, case: InputCase, out_dir: Path,
                 formats: Sequence[OutputFormat], device: torch.device,
                 training: Mapping[str, VolumeRange]) -> PredictRow:
    row = PredictRow(input=case.source, status="predicted", name=case.name, case_id=case.case_id)
    try:
        written = write_case_prediction(ws, cfg, bundle, case.case_id, case_outputs(out_dir, case, formats), device)
    except MissingChannelError as exc:
        return row.model_copy(update={"status": "skipped", "reason": "missing_channel", "detail": str(exc)})
    except Exception as exc:  # one bad case must not stop the others; it is reported
        log.exception("prediction failed for %s (case %s)", case.name, case.case_id)
        return row.model_copy(update={"status": "failed", "reason": type(exc).__name__, "detail": str(exc)})
    notes = [p.name for p in written.files]
    if OutputFormat.DICOM_SEG in formats and written.seg_file is None:
        why = "a NIfTI/NRRD input has no DICOM source" if not case.from_dicom else written.seg_note
        notes.append(f"dicom-seg skipped: {why.removeprefix('skipped: ')}")
    qa = assess_measured(case.case_id, bundle.family, written.volumes_ml, written.confidence, training, cfg.qa)
    return row.model_copy(update={"detail": ", ".join(notes), "files": [str(p) for p in written.files],
                                  "qa_score": qa.score, "qa_flagged": qa.flagged, "qa_reasons": qa.reasons})


def predict_input_task(case: InputCase, *, workspace: str, cfg: MedsegConfig, bundle_path: str, out_dir: str,
                       formats: list[str], holds_gpu: bool, training: Mapping[str, VolumeRange]) -> CaseRun:
    """Predict one input case on this Dask worker (:func:`_predict_one`; its row is ``detail``)."""
    t0 = time.perf_counter()
    place = on_worker(cfg.train.device, holds_gpu)
    bundle = cached_bundle(bundle_path, place.device)
    row = _predict_one(Workspace.at(workspace), cfg, bundle, case, Path(out_dir), parse_formats(formats), place.device,
                       training)
    return CaseRun(case.case_id, row.status, time.perf_counter() - t0, place.worker, str(place.device),
                   peak_rss_mib(), detail=row)


def _predict_on_cluster(ws: Workspace, cfg: MedsegConfig, bundle: ModelBundle | BundleRef, cases: list[InputCase],
                        out_dir: Path, formats: Sequence[OutputFormat], client: Client,
                        progress: Progress | None, training: Mapping[str, VolumeRange]) -> list[PredictRow]:
    """The rows of ``cases``, each predicted by a task on ``client``'s workers (completion order)."""
    rows: list[PredictRow] = []

    def _report(o: Outcome[InputCase, CaseRun], done: int, total: int) -> None:
        case = o.item
        if o.value is not None and isinstance(o.value.detail, PredictRow):
            row = o.value.detail
        else:  # the task itself failed (e.g. the model does not load on the worker)
            reason = (o.error or "error").split(":", 1)[0]
            row = PredictRow(input=case.source, status="failed", name=case.name, case_id=case.case_id,
                             reason=reason, detail=str(o.error))
            log.error("prediction failed for %s (case %s): %s", case.name, case.case_id, o.error)
        rows.append(row)
        if progress is not None:
            progress({"event": "case", "case_id": case.case_id, "status": row.status, "done": done, "total": total})

    fan_out_cases(predict_input_task, cases, client, cfg.train.device, on_outcome=_report, workspace=str(ws.root),
                  cfg=cfg, bundle_path=str(Path(bundle.path).resolve()), out_dir=str(out_dir),
                  formats=[f.value for f in formats], training=dict(training))
    return rows


def _problems(summary: PredictSummary) -> list[str]:
    """Why the command fails: inputs without any prediction (with their skip reasons), and failed cases."""
    problems = []
    for source in summary.inputs:
        rows = [r for r in summary.rows if r.input == source]
        if not any(r.status == "predicted" for r in rows):
            reasons = sorted({r.reason for r in rows if r.reason})
            problems.append(f"{source}: nothing predicted" + (f" ({', '.join(reasons)})" if reasons
                                                               else " (no image series found)"))
    problems.extend(f"{r.name or r.case_id}: failed ({r.reason}: {r.detail})" for r in summary.rows
                    if r.status == "failed")
    return problems
