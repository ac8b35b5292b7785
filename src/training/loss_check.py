"""Stop a run at its first non-finite loss, before that step changes the weights.

open_clip_train trains on through a NaN loss (a logit scale that overflows, a learning rate too
high, float16 overflow) and saves checkpoints of NaN weights. The loss module of the run gets a
forward hook that applies the rule DINO's training applies too
(:func:`open_clip_sparo.util.errors.check_finite_loss`), naming the step and the last good
checkpoint.
"""

from __future__ import annotations

import math
from typing import Any

import open_clip
from torch import nn

from open_clip_sparo.util.errors import check_finite_loss

from .checkpoints import latest_checkpoint

CAUSES = (
    "a learning rate too high (--lr, --warmup)",
    "a logit scale that overflows (init_logit_scale is its log: 100 means e^100; OpenCLIP's "
    "default is log(1/0.07))",
    "float16 overflow (--precision amp_bfloat16 or fp32 instead of amp or fp16)",
)


class FiniteLossCheck:
    """Counts the loss computations of a run and checks each total loss."""

    def __init__(self) -> None:
        self.args: Any = None
        self.epoch = 0
        self.batches_per_epoch = 0
        self.calls = 0
        self.next_create_loss: Any = open_clip.create_loss  # the create_loss this one replaces

    def create_loss(self, args: Any) -> nn.Module:
        """open_clip_train's ``create_loss``, with the check on the module's output."""
        self.args = args
        loss = self.next_create_loss(args)
        loss.register_forward_hook(self._check)
        return loss

    def start_epoch(self, epoch: int, batches_per_epoch: int) -> None:
        self.epoch, self.batches_per_epoch, self.calls = epoch, batches_per_epoch, 0

    def _check(self, module: nn.Module, inputs: Any, output: Any) -> None:
        total = sum(output.values()) if isinstance(output, dict) else output
        if isinstance(total, tuple):  # without output_dict: (loss, ...) of some losses
            total = sum(total)
        step_in_epoch = self.calls // self.args.accum_freq
        self.calls += 1
        step = self.batches_per_epoch * self.epoch + step_in_epoch
        value = float(total.detach())
        if math.isfinite(value):
            return
        kept = latest_checkpoint(self.args.checkpoint_path + "/", remote=False)
        check_finite_loss(
            value,
            f"step {step} (epoch {self.epoch}, batch {step_in_epoch + 1} of "
            f"{self.batches_per_epoch}) on rank {self.args.rank}",
            f"the last good checkpoint is {kept}" if kept else "no checkpoint was written yet",
            CAUSES,
        )
