"""One rank of a data-parallel training run: the train stage inside a ``torchrun`` process group.

The train stage starts it itself when ``train.processes`` > 1 (:mod:`medseg.stages.train_distributed`);
run it by hand (or from SLURM, ``deploy/slurm/medseg-train-ddp.sbatch``) with::

    torchrun --standalone --nproc-per-node 4 -m medseg.cli.train_rank --config site.yaml --family cnn

torchrun sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` and the rendezvous address; this entry point
joins the process group (NCCL when training on CUDA, one GPU per rank; gloo on CPU), runs
:func:`medseg.stages.train.run_train_stage` with the rank's
:class:`~medseg.training.distributed.DistContext` and leaves the group. The world size is torchrun's:
``train.batch_size`` (the global batch) must be a multiple of it. Rank 0 validates, writes the
bundle, promotes it and records the stage; with ``--outcome`` it writes the stage outcome there, with
``--progress`` it prints its progress as ``@medseg-progress [label, done, total]`` lines.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as tdist
from torch.distributed.elastic.multiprocessing.errors import record

from medseg.config import ModelFamily
from medseg.config_loader import ConfigError, load_config
from medseg.io.rank_outcome import write_rank_outcome
from medseg.stages.train import run_train_stage
from medseg.stages.train_distributed import PROGRESS_MARK
from medseg.training.device import resolve_device
from medseg.training.distributed import DistContext, backend_for


def rank_context(environ: dict[str, str] | os._Environ[str] = os.environ) -> DistContext:
    """This process's place in the group, from torchrun's ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``."""
    missing = [k for k in ("RANK", "WORLD_SIZE") if k not in environ]
    if missing:
        raise SystemExit(f"medseg.cli.train_rank runs under torchrun ({', '.join(missing)} not set): "
                         "torchrun --nproc-per-node N -m medseg.cli.train_rank --config CONFIG --family cnn")
    return DistContext(int(environ["RANK"]), int(environ["WORLD_SIZE"]), int(environ.get("LOCAL_RANK", "0")))


def print_progress(label: str, done: int, total: int) -> None:
    """Rank 0's progress, for the launching process (:func:`medseg.stages.train_distributed.relay_output`)."""
    print(PROGRESS_MARK + json.dumps([label, done, total]), flush=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m medseg.cli.train_rank", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", type=Path, required=True, help="medseg YAML config")
    ap.add_argument("--family", choices=[f.value for f in ModelFamily], default=ModelFamily.CNN.value)
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="config override, e.g. train.max_epochs=10 (repeatable)")
    ap.add_argument("--force", action="store_true", help="train even when data, plan and config are unchanged")
    ap.add_argument("--hold-promotion", default=None, metavar="REASON",
                    help="keep the new bundle but do not promote it (the nightly drift gate), for this reason")
    ap.add_argument("--outcome", type=Path, default=None, help="rank 0 writes the stage outcome (JSON) here")
    ap.add_argument("--progress", action="store_true", help="rank 0 prints progress lines")
    return ap.parse_args(argv)


@record  # a failing rank's traceback reaches torchrun's summary (and the launching process's error)
def main(argv: list[str] | None = None) -> int:
    """Run this rank's part of the train stage; 0 on success."""
    args = parse_args(argv)
    ctx = rank_context()
    logging.basicConfig(level=logging.INFO, format=f"[rank {ctx.rank}] %(levelname)s %(name)s: %(message)s")
    try:
        cfg = load_config(args.config, args.overrides)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    device = resolve_device(cfg.train.device)
    if ctx.active:
        if device.type == "cuda":
            torch.cuda.set_device(ctx.local_rank)
        timeout = timedelta(minutes=cfg.train.collective_timeout_minutes)
        tdist.init_process_group(backend_for(device), timeout=timeout)
    try:
        progress = print_progress if args.progress and ctx.is_main else None
        outcome = run_train_stage(cfg, ModelFamily(args.family), force=args.force, progress=progress,
                                  hold_promotion=args.hold_promotion, ctx=ctx)
        if ctx.is_main:
            if args.outcome is not None:
                write_rank_outcome(args.outcome, outcome.model_dump(mode="json"))
            print(outcome.headline(), flush=True)
    finally:
        if tdist.is_initialized():
            tdist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
