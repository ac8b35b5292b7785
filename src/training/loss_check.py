"""Stop a run at its first non-finite loss, before a checkpoint of it is saved.

open_clip_train trains on through a NaN loss (a logit scale that overflows, a learning rate too
high, float16 overflow) and saves checkpoints of NaN weights. The loss module of the run gets a
forward hook that hands each step's total loss to the rule DINO's training applies too
(:class:`open_clip_sparo.util.loss_watch.NonFiniteLossWatch`): kept on the device, no sync per
step. It is read where open_clip_train reads the device anyway: at the steps it logs (every
``--log-every-n-steps``, counted as it counts them) and at the last step of each epoch, before
the checkpoint is saved; :meth:`FiniteLossCheck.end_epoch` reads it once more in case the
epoch ended before its counted last step.
"""

from __future__ import annotations

from typing import Any

import open_clip
from torch import nn

from open_clip_sparo.util.loss_watch import NonFiniteLossWatch

from .checkpoints import latest_checkpoint

CAUSES = (
    "a learning rate too high (--lr, --warmup)",
    "a logit scale that overflows (init_logit_scale is its log: 100 means e^100; OpenCLIP's "
    "default is log(1/0.07))",
    "float16 overflow (--precision amp_bfloat16 or fp32 instead of amp or fp16)",
)


class FiniteLossCheck:
    """Counts the loss computations of a run and watches each total loss."""

    def __init__(self) -> None:
        self.args: Any = None
        self.epoch = 0
        self.batches_per_epoch = 0
        self.calls = 0
        self.watch = NonFiniteLossWatch(1, 0, CAUSES)
        self.next_create_loss: Any = open_clip.create_loss  # the create_loss this one replaces

    def create_loss(self, args: Any) -> nn.Module:
        """open_clip_train's ``create_loss``, with the watch on the module's output."""
        self.args = args
        self.watch.rank = args.rank
        loss = self.next_create_loss(args)
        loss.register_forward_hook(self._watch)
        return loss

    def start_epoch(self, epoch: int, batches_per_epoch: int) -> None:
        self.epoch, self.batches_per_epoch, self.calls = epoch, batches_per_epoch, 0
        self.watch.steps_per_epoch = batches_per_epoch

    def end_epoch(self) -> None:
        """Check the epoch's losses (every process calls this, before the checkpoint)."""
        if self.args is not None:
            self._check(self.batches_per_epoch * (self.epoch + 1) - 1)

    def _watch(self, module: nn.Module, inputs: Any, output: Any) -> None:
        total = sum(output.values()) if isinstance(output, dict) else output
        if isinstance(total, tuple):  # without output_dict: (loss, ...) of some losses
            total = sum(total)
        step_in_epoch, accumulated = divmod(self.calls, self.args.accum_freq)
        self.calls += 1
        step = self.batches_per_epoch * self.epoch + step_in_epoch
        self.watch.watch(total, step)
        logged = step_in_epoch % self.args.log_every_n_steps == 0
        last = step_in_epoch + 1 == self.batches_per_epoch
        if accumulated + 1 == self.args.accum_freq and (logged or last):
            self._check(step)

    def _check(self, step: int) -> None:
        self.watch.check(step, self._kept, distributed=self.args.distributed)

    def _kept(self) -> str:
        kept = latest_checkpoint(self.args.checkpoint_path + "/", remote=False)
        return f"the last good checkpoint is {kept}" if kept else "no checkpoint was written yet"
