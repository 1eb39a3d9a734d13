"""``medseg predict``: ingest DICOM folders and NIfTI/NRRD files, then predict every case of them with one model.

The inputs go through the normal ingest stage (:func:`medseg.stages.ingest.run_ingest_stage`: header
reading and study assembly fan out over Dask, quarantine reasons and all) into a temporary workspace
under the output folder (removed at the end) or, with ``temporary_workspace=False``, into
``cfg.workspace``. Each ingested image case of the inputs is then predicted as ``medseg infer`` does:
in this process, one after the other (the network loaded once, on every core or the GPU), or over
Dask workers, one task per case and one model load per worker (``infer.workers``; the rule is
:func:`medseg.inference.layout.choose_layout`), and written to the output folder named after its
study (:mod:`medseg.inference.predict_inputs`).
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from medseg.config import MedsegConfig, ModelFamily
from medseg.deid_key import workspace_key_file
from medseg.inference.input_cases import inventory, name_outputs
from medseg.inference.layout import choose_layout, cluster_gpu_workers, infer_client, machine_cores
from medseg.inference.model_cache import BundleRef
from medseg.inference.predict_inputs import parse_formats, predict_inventory
from medseg.io.catalog import Catalog
from medseg.runtime.gpu_workers import node_gpu_ids
from medseg.stages.infer import NoModelError
from medseg.stages.ingest import check_sources, run_ingest_stage
from medseg.stages.outcome import ProgressFn, StageOutcome, event_progress
from medseg.training.bundle import ModelBundle, champion, load_bundle
from medseg.training.device import configure_threads, resolve_device
from medseg.workspace import Workspace

STAGE = "predict"


def resolve_model(cfg: MedsegConfig, model: str) -> Path:
    """The bundle folder ``model`` names: a folder, or a model family's champion in ``cfg.workspace``.

    Raises:
        NoModelError: a family without a champion, or neither a family nor an existing folder.
    """
    path = Path(model).expanduser()
    if path.is_dir():
        return path.resolve()
    families = [f.value for f in ModelFamily]
    if model in families:
        ws = Workspace.at(cfg.workspace)
        found = champion(ws, model)
        if found is None:
            raise NoModelError(f"no {model} champion in {ws.model_family_dir(model)}: run `medseg train --model "
                               f"{model} --workspace {cfg.workspace}` or pass --model BUNDLE_DIR")
        return found
    raise NoModelError(f"--model {model!r} is neither a model family ({', '.join(families)}) nor a model bundle folder")


def ingest_config(cfg: MedsegConfig, workspace: Path, sources: list[Path]) -> MedsegConfig:
    """The config of the inputs' ingest into ``workspace``.

    Without a configured key (``ingest.deid_secret`` / ``deid_key_file``), a temporary workspace uses the
    key file of ``cfg.workspace`` when there is one, so the study names equal that workspace's study keys
    (otherwise ingest makes the temporary workspace its own random key: other names on every run).
    """
    ingest = cfg.ingest
    site_key = workspace_key_file(Workspace.at(cfg.workspace))
    own = Path(workspace).resolve() == Path(cfg.workspace).expanduser().resolve()
    if ingest.deid_secret is None and ingest.deid_key_file is None and not own and site_key.is_file():
        ingest = ingest.model_copy(update={"deid_key_file": site_key})
    return cfg.model_copy(update={"workspace": Path(workspace), "sources": list(sources), "ingest": ingest})


@contextlib.contextmanager
def ingest_workspace(cfg: MedsegConfig, out_dir: Path, temporary: bool) -> Iterator[Path]:
    """``cfg.workspace``, or a temporary workspace in ``out_dir`` (same disk as the outputs), removed on exit."""
    if not temporary:
        yield Path(cfg.workspace).expanduser()
        return
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".medseg-predict-", dir=out_dir))
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def run_predict_stage(
    cfg: MedsegConfig,
    inputs: Sequence[Path | str],
    out_dir: Path | str,
    model: str,
    formats: str | Sequence[str] = "nifti,dicom-seg",
    keep_names: bool = False,
    temporary_workspace: bool = True,
    progress: ProgressFn | None = None,
) -> StageOutcome:
    """Ingest ``inputs`` and predict every image case of them into ``out_dir`` (see the module doc).

    Args:
        cfg: configuration (``ingest``, ``dask``, ``infer``, ``train.device``; ``workspace``: where a model
            family's champion is, and the ingest workspace when ``temporary_workspace`` is False).
        inputs: DICOM folders (any nesting, many studies), NIfTI/NRRD files or folders.
        out_dir: output folder.
        model: ``cnn`` / ``gan`` (the champion) or a bundle folder.
        formats: ``dicom-seg``, ``nifti``, ``zarr`` (comma-separated or a list).
        keep_names: readable output names instead of de-identified study keys.
        temporary_workspace: ingest into a temporary workspace (else into ``cfg.workspace``, kept).
        progress: ``progress(label, done, total)``.

    Returns:
        The outcome; ``stats["problems"]`` is non-empty when an input yielded no prediction or a case failed.

    Raises:
        SourceNotFoundError: an input does not exist. NoModelError: no such model. ValueError: a bad format.
    """
    started = time.time()
    sources = check_sources([Path(p) for p in inputs])
    fmts = parse_formats(formats)
    bundle_path = resolve_model(cfg, model)
    out = Path(out_dir).expanduser().resolve()
    with ingest_workspace(cfg, out, temporary_workspace) as root:
        ingested = run_ingest_stage(ingest_config(cfg, root, sources), progress=progress)
        ws = Workspace.at(root)
        inv = inventory(Catalog(ws.catalog_path, create=False), sources)
        cases = name_outputs(inv, keep_names)
        gpus = node_gpu_ids()
        layout = choose_layout(cfg.infer.workers, cfg.dask, cfg.train.device, gpus, len(cases),
                               cluster_gpu_workers(cfg.dask) if cfg.dask.address and gpus else None, machine_cores())
        bundle: ModelBundle | BundleRef = BundleRef.read(bundle_path)
        with infer_client(cfg, layout) as client:
            device = None
            if client is None:
                configure_threads(cfg.train)
                device = resolve_device(cfg.train.device)
                bundle = load_bundle(bundle_path, device=device)
            summary = predict_inventory(ws, cfg, bundle, inv, cases, out, fmts, device or "cpu",
                                        progress=event_progress(progress, STAGE), client=client)
    stats = {
        "model": f"{bundle.family} {bundle.version}",
        "layout": layout.describe(),
        "predicted": summary.count("predicted"),
        "skipped": summary.count("skipped"),
        "failed": summary.count("failed"),
        "inputs": len(sources),
        "ingest": ingested.brief(),
        "rows": [r.model_dump(mode="json") for r in summary.rows],
        "problems": summary.problems,
        "qa_flagged": sum(r.qa_flagged for r in summary.rows),
        "workspace": "temporary (removed)" if temporary_workspace else str(root),
    }
    return StageOutcome(stage=STAGE, seconds=time.time() - started, stats=stats, outputs=[str(out)])
