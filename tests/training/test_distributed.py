"""Data-parallel training: 2 gloo processes x batch B train the weights of 1 process x batch 2B; a killed
rank is restarted by torchrun and resumes from the last checkpoint to the same weights.

The multi-process tests start the ranks the way the flow does (``train.processes=2`` in the train stage:
``torchrun`` running ``medseg.cli.train_rank``), one torch thread per rank, on the tiny phantom workspace.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import phantom_data
import pytest
import torch
from monai.losses import DiceCELoss
from pydantic import ValidationError

from medseg.config import MedsegConfig, ModelFamily
from medseg.io.bundle import read_metadata
from medseg.stage_record import load_record
from medseg.stages import train_distributed
from medseg.stages.outcome import StageOutcome
from medseg.stages.train import run_train_stage
from medseg.training.checkpoint import LAST, load_checkpoint
from medseg.training.losses import ShardedDiceCELoss
from medseg.training.promotion import champion
from medseg.training.rank_sampler import RankSliceSampler
from medseg.workspace import Workspace

#: max |w_ddp - w_single| accepted: the ranks' float sums run in another order than one process's
TOLERANCE = 1e-4
HERE = Path(__file__).parent


def _cfg(root: Path, **train: object) -> MedsegConfig:
    """2 epochs x 2 steps of the global batch 4 (2 per rank), one thread per process. The learning rate 0.1
    makes 4 steps tell the right loss from a per-rank batch Dice (weights 3e-4 apart; right: 6e-7). Ranks
    that wait for each other in different collectives fail after 1 minute instead of hanging."""
    base: dict[str, object] = {"batch_size": 4, "iterations_per_epoch": 2, "max_epochs": 2, "num_threads": 1,
                               "max_restarts": 0, "learning_rate": 0.1, "collective_timeout_minutes": 1}
    cfg: MedsegConfig = phantom_data.tiny_config(**{**base, **train})
    return cfg.model_copy(update={"workspace": root})


def _last_weights(outcome: StageOutcome) -> dict[str, dict[str, torch.Tensor]]:
    """Every network's weights after the last step (the bundle's copy of the run's ``last.pt``)."""
    ck = load_checkpoint(Path(outcome.outputs[0]) / "checkpoints" / LAST)
    modules: dict[str, dict[str, torch.Tensor]] = ck["stepper"]["modules"]
    return modules


def _max_abs_diff(a: dict[str, dict[str, torch.Tensor]], b: dict[str, dict[str, torch.Tensor]]) -> float:
    assert a.keys() == b.keys() and all(a[n].keys() == b[n].keys() for n in a)
    return max(float((a[n][k].double() - b[n][k].double()).abs().max()) for n in a for k in a[n])


def _train(tmp: Path, name: str, family: ModelFamily, **train: object) -> StageOutcome:
    ws = phantom_data.write_phantom_workspace(tmp / name)
    torch.set_num_threads(1)
    return run_train_stage(_cfg(ws.root, **train), family)


@pytest.fixture(scope="module")
def cnn_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, StageOutcome]:
    """The CNN trained by one process (batch 4) and by two gloo processes (batch 2 each)."""
    tmp = tmp_path_factory.mktemp("ddp")
    return {"single": _train(tmp, "single", ModelFamily.CNN),
            "ddp": _train(tmp, "ddp", ModelFamily.CNN, processes=2)}


def test_rank_slices_make_up_the_one_process_batches() -> None:
    single = list(range(12))
    ranks = [list(RankSliceSampler(12, 4, r, 2)) for r in range(2)]
    steps = [ranks[0][2 * k:2 * k + 2] + ranks[1][2 * k:2 * k + 2] for k in range(3)]
    assert [i for step in steps for i in step] == single
    assert len(RankSliceSampler(12, 6, 2, 3)) == 4 and list(RankSliceSampler(12, 6, 2, 3)) == [4, 5, 10, 11]
    with pytest.raises(ValueError, match="multiple of the number of processes"):
        RankSliceSampler(12, 3, 0, 2)


def test_sharded_dice_ce_equals_monai_in_one_process() -> None:
    gen = torch.Generator().manual_seed(0)
    pred = torch.randn(3, 3, 6, 8, 8, generator=gen, dtype=torch.float64, requires_grad=True)
    target = torch.randint(0, 3, (3, 1, 6, 8, 8), generator=gen)
    target[0] = 0  # a sample without foreground: the batch Dice still counts it
    monai = DiceCELoss(include_background=False, to_onehot_y=True, softmax=True, batch=True, smooth_nr=1e-5,
                       smooth_dr=1e-5)
    ref, ours = monai(pred, target), ShardedDiceCELoss()(pred, target)
    (g_ref,), (g_ours,) = torch.autograd.grad(ref, pred), torch.autograd.grad(ours, pred)
    assert float(abs(ref.detach() - ours.detach())) < 1e-12 and float((g_ref - g_ours).abs().max()) < 1e-12


def test_config_refuses_what_cannot_run_data_parallel() -> None:
    with pytest.raises(ValidationError, match="multiple of the number of processes"):
        phantom_data.tiny_config(batch_size=3, processes=2)
    with pytest.raises(ValidationError, match="folds=3 cannot train data-parallel"):
        phantom_data.tiny_config(batch_size=2, processes=2, folds=3)
    with pytest.raises(ValidationError, match="fit_minutes cannot plan a data-parallel run"):
        phantom_data.tiny_config(batch_size=2, processes=2, fit_minutes=5)


def test_two_gloo_processes_train_the_weights_of_one_process_with_the_whole_batch(
    cnn_runs: dict[str, StageOutcome],
) -> None:
    single, ddp = cnn_runs["single"], cnn_runs["ddp"]
    assert ddp.stats["iterations"] == single.stats["iterations"] == 4
    assert _max_abs_diff(_last_weights(ddp), _last_weights(single)) <= TOLERANCE
    # rank 0 wrote the bundle, promoted it and recorded the stage; the history holds the global loss
    ws_root = Path(ddp.outputs[0]).parents[2]
    meta = read_metadata(Path(ddp.outputs[0]))
    assert meta["training"]["processes"] == 2 and single.stats["promoted"] and ddp.stats["promoted"]
    assert champion(Workspace.at(ws_root), "cnn") is not None
    assert load_record(Workspace.at(ws_root), "train-cnn") is not None
    assert [e["loss"] for e in _history(ddp)] == pytest.approx([e["loss"] for e in _history(single)], abs=1e-5)


def _history(outcome: StageOutcome) -> list[dict[str, Any]]:
    ck = load_checkpoint(Path(outcome.outputs[0]) / "checkpoints" / LAST)
    history: list[dict[str, Any]] = ck["state"]["history"]
    return history


def test_gan_trains_data_parallel_to_the_one_process_weights(tmp_path: Path) -> None:
    gan = {"max_epochs": 1, "gan": {"warmup_epochs": 0, "adversarial_weight": 0.5}}  # adversarial term from step 1
    single = _train(tmp_path, "single", ModelFamily.GAN, **gan)
    ddp = _train(tmp_path, "ddp", ModelFamily.GAN, processes=2, **gan)
    weights = _last_weights(ddp)
    assert set(weights) == {"model", "discriminator"}
    assert _max_abs_diff(weights, _last_weights(single)) <= TOLERANCE


def test_killed_rank_is_restarted_and_resumes_to_the_uninterrupted_weights(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cnn_runs: dict[str, StageOutcome]
) -> None:
    marker = tmp_path / "killed.txt"
    monkeypatch.setenv("KILL_EPOCH", "1")  # epoch 0 is in last.pt; rank 1 dies before the last step
    monkeypatch.setenv("KILL_STEP", "1")
    monkeypatch.setenv("KILL_MARKER", str(marker))
    monkeypatch.setattr(train_distributed, "torchrun_command", functools.partial(
        train_distributed.torchrun_command, entry=[str(HERE / "ddp_killed_rank.py")]))
    resumed = _train(tmp_path, "killed", ModelFamily.CNN, processes=2, max_restarts=1)
    assert marker.is_file()
    assert resumed.stats["resumed_from_epoch"] == 1 and resumed.stats["iterations"] == 4
    assert _max_abs_diff(_last_weights(resumed), _last_weights(cnn_runs["ddp"])) == 0.0


def test_failed_ranks_raise_with_their_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KILL_EPOCH", "0")
    monkeypatch.setenv("KILL_STEP", "0")
    monkeypatch.setenv("KILL_MARKER", str(tmp_path / "killed.txt"))
    monkeypatch.setattr(train_distributed, "torchrun_command", functools.partial(
        train_distributed.torchrun_command, entry=[str(HERE / "ddp_killed_rank.py")]))
    with pytest.raises(train_distributed.DistributedTrainingError, match=r"2 processes, 0 restarts\) failed"):
        _train(tmp_path, "failed", ModelFamily.CNN, processes=2, max_epochs=1)


@pytest.mark.parametrize(("fast_rank", "stopped", "iterations"), [(1, "iteration_budget", 2), (0, "time_cap", 0)])
def test_rank_0_clock_decides_the_time_cap_for_all_ranks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fast_rank: int, stopped: str, iterations: int
) -> None:
    """A clock 1e9 times too fast (60 minutes spent in 4 microseconds) on rank 1 changes nothing: rank 0 trains
    the budget and rank 1 keeps up; on rank 0 it stops both ranks before their first step (the capped run
    still validates, writes and records its bundle)."""
    monkeypatch.setenv("FAST_CLOCK_RANK", str(fast_rank))
    monkeypatch.setenv("FAST_CLOCK_FACTOR", "1e9")
    monkeypatch.setattr(train_distributed, "torchrun_command", functools.partial(
        train_distributed.torchrun_command, entry=[str(HERE / "ddp_fast_clock.py")]))
    outcome = _train(tmp_path, "capped", ModelFamily.CNN, processes=2, max_epochs=1, max_minutes=60)
    assert outcome.stats["stopped"] == stopped and outcome.stats["iterations"] == iterations
    assert outcome.stats["time_capped"] is (stopped == "time_cap")


def test_the_ranks_are_told_to_hold_promotion(tmp_path: Path) -> None:
    """The nightly drift gate reaches rank 0 of a data-parallel run (it promotes)."""
    from medseg.cli.train_rank import parse_args

    cmd = train_distributed.torchrun_command(tmp_path / "c.yaml", "cnn", 2, 0, tmp_path / "o.json",
                                             hold_promotion="3 of 5 new cases out of distribution")
    args = parse_args(cmd[cmd.index("-m", 3) + 2:])
    assert args.hold_promotion == "3 of 5 new cases out of distribution"
    assert parse_args(["--config", "c.yaml"]).hold_promotion is None
