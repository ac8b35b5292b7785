from argparse import Namespace
from pathlib import Path

import pytest
import torch
from device_syncs import HostReads
from torch import nn

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
