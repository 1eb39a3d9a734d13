"""The train stage as ``train.processes`` data-parallel processes, started with ``torchrun``.

The stage's own process (a Prefect task, ``medseg train``) writes the config to a temporary folder and runs

    python -m torch.distributed.run --standalone --nproc-per-node N --max-restarts R \
        -m medseg.cli.train_rank --config CONFIG --family FAMILY --outcome OUTCOME --progress

Each process (rank) runs the whole stage (:func:`medseg.stages.train.run_train_stage` with its
:class:`~medseg.training.distributed.DistContext`); rank 0 promotes, records the stage and writes its
outcome (:mod:`medseg.io.rank_outcome`), which this process returns. Rank 0's progress reaches the
caller's ``progress`` through marked lines on stdout; every other output line of the ranks is logged.

When a rank dies, torchrun stops the others and restarts all of them (``train.max_restarts`` times);
they resume from the run's ``last.pt`` (the end of the last completed epoch), so the weights equal
those of an uninterrupted run. When the restarts are spent, :class:`DistributedTrainingError` names
the exit status and the last lines of the ranks' output.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import tempfile
from collections import deque
from collections.abc import Iterable
from pathlib import Path

from medseg.config import MedsegConfig, ModelFamily
from medseg.config_loader import dump_config
from medseg.io.rank_outcome import read_rank_outcome
from medseg.stages.outcome import ProgressFn, StageOutcome

log = logging.getLogger(__name__)

#: The module each rank runs (``python -m``).
RANK_ENTRY_MODULE = "medseg.cli.train_rank"
#: Prefix of the progress lines rank 0 prints: ``@medseg-progress ["label", done, total]``.
PROGRESS_MARK = "@medseg-progress "
#: Output lines of the ranks quoted in an error.
TAIL_LINES = 30
#: Environment of torchrun: with its rendezvous TCP store shared with the ranks' process group (the
#: default), restarted ranks can read the connection keys of the previous attempt and fail to connect
#: ("Gloo connectFullMesh failed ... Connection refused"; pytorch/pytorch#135712, #167288).
TORCHRUN_ENV = {"TORCH_DISABLE_SHARE_RDZV_TCP_STORE": "1"}


class DistributedTrainingError(RuntimeError):
    """The torchrun processes of a data-parallel training ended without an outcome."""


def torchrun_command(
    config_path: Path,
    family: str,
    processes: int,
    max_restarts: int,
    outcome_path: Path,
    force: bool = False,
    entry: list[str] | None = None,
    hold_promotion: str | None = None,
) -> list[str]:
    """The ``torchrun`` command line of one data-parallel train stage on this node.

    Args:
        config_path: YAML config every rank loads.
        family: model family to train.
        processes: ranks to start (one per GPU on a GPU node).
        max_restarts: torchrun restarts of all ranks after a failure.
        outcome_path: where rank 0 writes the stage outcome.
        force: train even when the stage record is up to date.
        entry: what each rank runs (default ``-m medseg.cli.train_rank``; tests run a script).
        hold_promotion: why rank 0 must not promote the new bundle (the nightly drift gate).
    """
    return [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes=1",
        f"--nproc-per-node={processes}", f"--max-restarts={max_restarts}",
        *(entry or ["-m", RANK_ENTRY_MODULE]),
        "--config", str(config_path), "--family", family, "--outcome", str(outcome_path), "--progress",
        *(["--force"] if force else []),
        *(["--hold-promotion", hold_promotion] if hold_promotion is not None else []),
    ]


def relay_output(lines: Iterable[str], progress: ProgressFn | None, tail: deque[str]) -> None:
    """Pass the ranks' progress lines to ``progress``, log the others and keep the last ones in ``tail``."""
    for raw in lines:
        line = raw.rstrip("\n")
        _, mark, payload = line.partition(PROGRESS_MARK)
        if mark:
            if progress is not None:
                label, done, total = json.loads(payload)
                progress(str(label), int(done), int(total))
            continue
        tail.append(line)
        log.info("%s", line)


def run_train_stage_distributed(
    cfg: MedsegConfig, family: ModelFamily, force: bool = False, progress: ProgressFn | None = None,
    hold_promotion: str | None = None,
) -> StageOutcome:
    """Run the train stage of ``family`` as ``cfg.train.processes`` torchrun ranks; rank 0's outcome.

    Raises:
        DistributedTrainingError: the ranks failed (after ``train.max_restarts`` restarts) or wrote no outcome.
    """
    tcfg = cfg.train
    # the ranks need no de-identification key: it stays out of the temporary config
    rank_cfg = cfg.model_copy(update={"ingest": cfg.ingest.model_copy(update={"deid_secret": None})})
    with tempfile.TemporaryDirectory(prefix="medseg-ddp-") as tmp:
        config_path, outcome_path = Path(tmp) / "config.yaml", Path(tmp) / "outcome.json"
        config_path.write_text(dump_config(rank_cfg), encoding="utf-8")
        cmd = torchrun_command(config_path, family.value, tcfg.processes, tcfg.max_restarts, outcome_path, force,
                               hold_promotion=hold_promotion)
        log.info("training %s with %d data-parallel processes: %s", family.value, tcfg.processes, " ".join(cmd))
        tail: deque[str] = deque(maxlen=TAIL_LINES)
        with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
                              env={**os.environ, **TORCHRUN_ENV}) as proc:
            assert proc.stdout is not None
            relay_output(proc.stdout, progress, tail)
            code = proc.wait()
        if code != 0 or not outcome_path.is_file():
            raise DistributedTrainingError(
                f"data-parallel training of {family.value} ({tcfg.processes} processes, {tcfg.max_restarts} "
                f"restarts) failed with exit status {code}; last output of the processes:\n" + "\n".join(tail)
            )
        return StageOutcome.model_validate(read_rank_outcome(outcome_path))
