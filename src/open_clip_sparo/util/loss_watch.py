"""The rule of both training loops for a NaN or infinite loss, without a device sync per step.

Reading a CUDA loss on the host (``loss.item()``, ``math.isfinite(loss)``) waits for the device
to finish the step: once per step, that stalls the launch queue. :class:`NonFiniteLossWatch`
instead keeps the first non-finite step, and its loss, in two tensors on the loss's device;
watching a step only launches small kernels. :meth:`NonFiniteLossWatch.check`, called where the
loop already reads the device (its log steps and the end of each epoch, before a checkpoint is
saved), copies them to the host once and raises :class:`NonFiniteLossError`. The steps between
the bad one and the check have run their optimizer steps (with NaN gradients, the weights in
memory are NaN), but the run stops before anything of the epoch is saved.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.distributed as dist

from .errors import NonFiniteLossError

NO_STEP = 2**62  # no non-finite loss watched yet (exact in float64, as check reads it)


class NonFiniteLossWatch:
    """The first step of a run whose loss is NaN or infinite, kept on the loss's device.

    ``steps_per_epoch`` numbers a step as (epoch, batch) in messages; ``rank`` names the process;
    ``causes`` are the likely causes with their flags.
    """

    def __init__(self, steps_per_epoch: int, rank: int, causes: Sequence[str]) -> None:
        self.steps_per_epoch = steps_per_epoch
        self.rank = rank
        self.causes = tuple(causes)
        self.first_step: torch.Tensor | None = None  # () int64, NO_STEP until a bad loss
        self.first_loss: torch.Tensor | None = None  # () float32, that step's loss

    def watch(self, loss: torch.Tensor, step: int) -> None:
        """Remember ``step`` if its ``loss`` is the first non-finite one; no device sync."""
        loss = loss.detach().float()
        if self.first_step is None:
            self.first_step = torch.full((), NO_STEP, dtype=torch.int64, device=loss.device)
            self.first_loss = torch.zeros((), device=loss.device)
        first = ~torch.isfinite(loss) & (self.first_step == NO_STEP)
        self.first_step.masked_fill_(first, step)
        self.first_loss = torch.where(first, loss, self.first_loss)

    def check(self, checked_step: int, kept: Callable[[], str], distributed: bool = False) -> None:
        """Raise :class:`NonFiniteLossError` if a watched loss was NaN or infinite (on any
        process, when ``distributed``: every process calls this at the same step). One device
        sync. ``checked_step`` is the step being checked; ``kept()`` names the last good
        checkpoint (called only to raise)."""
        if self.first_step is None:
            return
        found = torch.stack([self.first_step.double(), self.first_loss.double()])  # (2,)
        if distributed:
            gathered = [torch.empty_like(found) for _ in range(dist.get_world_size())]
            dist.all_gather(gathered, found)
            every = torch.stack(gathered).cpu()  # (processes, 2)
        else:
            every = found.cpu()[None]  # (1, 2)
        first = int(every[:, 0].argmin())
        rank = first if distributed else self.rank
        step, loss = int(every[first, 0]), float(every[first, 1])
        if step == NO_STEP:
            return
        raise NonFiniteLossError(
            f"the training loss is {loss} at {self.describe(step)} on rank {rank} (found at the "
            f"check of step {checked_step}); training stopped before saving anything of this "
            f"epoch ({kept()}). Likely causes: {'; '.join(self.causes)}."
        )

    def describe(self, step: int) -> str:
        """``step S (epoch E, batch b of N)``."""
        epoch, batch = divmod(step, self.steps_per_epoch)
        return f"step {step} (epoch {epoch}, batch {batch + 1} of {self.steps_per_epoch})"
