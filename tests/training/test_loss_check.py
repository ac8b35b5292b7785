"""training.loss_check: a non-finite loss stops the run at the next check without a host sync per
step, and keeps the last good checkpoint."""

from __future__ import annotations

from argparse import Namespace
from pathlib import Path

import pytest
import torch
from device_syncs import HostReads
from torch import nn
from training_utils import checkpoint_state, run_in_process, train_args

from open_clip_sparo.util.errors import NonFiniteLossError
from training.loss_check import FiniteLossCheck


class GivenLosses(nn.Module):
    """A loss module that returns the next of ``losses`` as open_clip's losses do."""

    def __init__(self, losses: list[float]) -> None:
        super().__init__()
        self.losses = iter(losses)

    def forward(self) -> dict[str, torch.Tensor]:
        return {"contrastive_loss": torch.tensor(next(self.losses), requires_grad=True)}


def _check(tmp_path: Path, losses: list[float], log_every: int, accum_freq: int = 1):
    check = FiniteLossCheck()
    check.next_create_loss = lambda args: GivenLosses(losses)
    args = Namespace(
        accum_freq=accum_freq,
        log_every_n_steps=log_every,
        rank=0,
        distributed=False,
        checkpoint_path=str(tmp_path),
    )
    return check, check.create_loss(args)


def test_the_loss_is_read_on_the_host_only_at_the_log_steps_and_the_last(tmp_path):
    check, loss = _check(tmp_path, [1.0] * 10, log_every=5)
    check.start_epoch(0, 10)
    reads_per_step = []
    for _ in range(10):
        with HostReads() as reads:
            loss()
        reads_per_step.append(reads.count)
    read_steps = [step for step, count in enumerate(reads_per_step) if count]
    assert read_steps == [0, 5, 9]  # open_clip_train's log steps (it reads the device there too)


def test_a_bad_step_stops_the_run_at_the_next_check_naming_it(tmp_path):
    torch.save({"epoch": 2}, tmp_path / "epoch_2.pt")
    losses = [1.0] * 3 + [float("nan")] + [1.0] * 6
    check, loss = _check(tmp_path, losses * 2, log_every=5, accum_freq=2)
    check.start_epoch(2, 5)
    for _ in range(9):  # steps 10..14 of epoch 2, two loss calls each (accumulation)
        loss()
    with pytest.raises(NonFiniteLossError) as error:
        loss()  # step 14's second call: the epoch's last step, checked
    assert str(error.value).startswith(
        "the training loss is nan at step 11 (epoch 2, batch 2 of 5) on rank 0 (found at the "
        f"check of step 14); training stopped before saving anything of this epoch (the last "
        f"good checkpoint is {tmp_path / 'epoch_2.pt'})."
    )


def test_the_end_of_an_epoch_checks_its_losses(tmp_path):
    check, loss = _check(tmp_path, [1.0, float("inf")], log_every=100)
    check.start_epoch(0, 4)  # the data ends before its counted last step
    loss()
    loss()
    with pytest.raises(NonFiniteLossError, match=r"loss is inf at step 1 .*\(no checkpoint was"):
        check.end_epoch()


@pytest.mark.slow
def test_non_finite_loss_stops_the_run_and_keeps_the_last_good_checkpoint(
    shards: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # the reported case: exp(100) overflows, the loss is NaN from the first step
    argv = [*train_args(shards, tmp_path, "nan"), "--model-kwargs", '{"init_logit_scale": 100}']
    assert run_in_process(argv) == 1  # before: 0, and an epoch_1.pt of NaN tensors
    error = capsys.readouterr().err.splitlines()[-1]
    assert error.startswith("training.main: error: the training loss is nan at step 0 (epoch 0")
    assert "no checkpoint was written yet" in error and "init_logit_scale" in error
    assert "--lr" in error and "--precision" in error
    assert not list((tmp_path / "nan" / "checkpoints").iterdir())
    assert "the training loss is nan" in (tmp_path / "nan" / "out.log").read_text()

    # a good epoch, then a learning rate that breaks the weights in the next one
    argv = train_args(shards, tmp_path, "later", epochs=1)
    assert run_in_process(argv) == 0
    argv[argv.index("--epochs") + 1] = "2"
    argv[argv.index("--lr") + 1] = "1e30"
    assert run_in_process([*argv, "--resume", "latest"]) == 1
    error = capsys.readouterr().err.splitlines()[-1]
    kept = tmp_path / "later" / "checkpoints" / "epoch_1.pt"
    assert "(epoch 1, batch 2 of 4)" in error and f"the last good checkpoint is {kept}" in error
    assert not (kept.parent / "epoch_2.pt").exists()
    assert all(torch.isfinite(v).all() for v in checkpoint_state(kept).values())


@pytest.mark.slow  # two training runs
@pytest.mark.parametrize("resume", [[], ["--resume", "latest"]], ids=["rerun", "resume-latest"])
def test_a_run_stopped_at_step_0_does_not_block_its_corrected_rerun(
    shards: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], resume: list[str]
) -> None:
    argv = train_args(shards, tmp_path, "nan")
    assert run_in_process([*argv, "--model-kwargs", '{"init_logit_scale": 100}']) == 1
    assert "the training loss is nan at step 0" in capsys.readouterr().err
    # before: "already holds a run", and with --resume latest: "describes another model"
    assert run_in_process([*argv, *resume]) == 0
    run = tmp_path / "nan"
    assert (run / "checkpoints" / "epoch_1.pt").is_file()
    assert '"init_logit_scale": 100' not in (run / "open_clip_config.json").read_text()
    if not resume:  # open_clip_train wants a new out.log: the failed run's is kept beside it
        assert "the training loss is nan" in (run / "out.failed-1.log").read_text()
