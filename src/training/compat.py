"""Fixes for the pinned stack (open_clip_train 3.3.0, PyTorch 2.x, NumPy 2), active during a run.

Each fix replaces one name for the duration of :func:`pinned_stack_fixes` and says which upstream
behaviour it works around.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from typing import Any

import open_clip_train.logger
import open_clip_train.main
import open_clip_train.zero_shot
import torch
from torch.nn.parallel import DistributedDataParallel

from .patching import patched


class CpuDistributedDataParallel(DistributedDataParallel):
    """``DistributedDataParallel`` that accepts open_clip_train's ``device_ids=[device]`` on CPU.

    open_clip_train wraps the model as ``DistributedDataParallel(model, device_ids=[device])``
    whatever the device, and PyTorch raises a ``ValueError`` for device ids with a CPU module, so
    multi-process (gloo) training on CPU fails before its first step. PyTorch wants no device ids
    for CPU modules; this class drops them and changes nothing else.
    """

    def __init__(
        self, module: torch.nn.Module, device_ids: Sequence[Any] | None = None, **kwargs: Any
    ) -> None:
        if device_ids and all(torch.device(d).type == "cpu" for d in device_ids):
            device_ids = None
        super().__init__(module, device_ids=device_ids, **kwargs)


def zero_shot_accuracy(
    output: torch.Tensor, target: torch.Tensor, topk: Sequence[int] = (1,)
) -> list[float]:
    """Number of samples whose label is among the ``k`` highest logits, for each ``k`` in ``topk``.

    Replaces ``open_clip_train.zero_shot.accuracy``, which calls ``float()`` on a one-element
    1-d NumPy array: NumPy 2 raises ``TypeError`` there, so zero-shot evaluation during training
    (``--imagenet-val``) crashes.
    """
    predictions = output.topk(max(topk), dim=1).indices.t()  # (max k, B), best first
    correct = predictions == target.view(1, -1)
    return [float(correct[:k].sum()) for k in topk]


def setup_logging(log_file: str | None, level: int, include_host: bool = False) -> None:
    """open_clip_train's ``setup_logging``, keeping PyTorch's own loggers at WARNING.

    The upstream function sets every existing logger to the run's level, PyTorch's internal ones
    included, so with PyTorch 2.x every process prints TorchDynamo's compile statistics at exit
    even when nothing was compiled. ``--debug`` (level DEBUG) still opens them all.
    """
    open_clip_train.logger.setup_logging(log_file, level, include_host)
    if level > logging.DEBUG:
        for name in list(logging.root.manager.loggerDict):
            if name.split(".", 1)[0] == "torch":
                logging.getLogger(name).setLevel(max(level, logging.WARNING))


@contextmanager
def pinned_stack_fixes() -> Iterator[None]:
    """Inside the block, open_clip_train runs with the fixes above."""
    with ExitStack() as stack:
        # open_clip_train.main calls torch.nn.parallel.DistributedDataParallel(...) by that path
        stack.enter_context(
            patched(torch.nn.parallel, "DistributedDataParallel", CpuDistributedDataParallel)
        )
        stack.enter_context(patched(open_clip_train.zero_shot, "accuracy", zero_shot_accuracy))
        stack.enter_context(patched(open_clip_train.main, "setup_logging", setup_logging))
        yield
