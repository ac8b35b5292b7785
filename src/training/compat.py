"""Fixes for the supported stack (open_clip_train 3.x, webdataset 0.2 and 1.x, PyTorch 2.x,
NumPy 2), active during a run (docs/compatibility.md).

Each fix replaces one or two names for the duration of :func:`pinned_stack_fixes`, says in one
line which upstream behaviour it works around, and is applied only where the installed release
has that behaviour (``NUMPY_2``; the others hold for every supported release).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from typing import Any

import numpy as np
import open_clip.factory
import open_clip_train.data
import open_clip_train.logger
import open_clip_train.main
import open_clip_train.zero_shot
import torch
from torch.nn.parallel import DistributedDataParallel

from open_clip_sparo.util.files import atomic_save

from .checkpoints import latest_checkpoint, read_pretrained, read_resume_checkpoint
from .data import WebDatasetTraining
from .patching import patched

# the releases a repair applies to (docs/compatibility.md)
NUMPY_2 = np.lib.NumpyVersion(np.__version__) >= "2.0.0"


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
    """Inside the block, open_clip_train runs with the fixes above, those of ``checkpoints``
    and the WebDataset data of ``data``."""
    webdataset = WebDatasetTraining()
    with ExitStack() as stack:
        # open_clip_train 3.x (all supported) passes device_ids on CPU, which PyTorch refuses;
        # open_clip_train.main calls torch.nn.parallel.DistributedDataParallel(...) by that path
        stack.enter_context(
            patched(torch.nn.parallel, "DistributedDataParallel", CpuDistributedDataParallel)
        )
        if NUMPY_2:  # NumPy 2 refuses the float() of an array in its zero-shot accuracy
            stack.enter_context(patched(open_clip_train.zero_shot, "accuracy", zero_shot_accuracy))
        # PyTorch 2.x (all supported) has internal loggers that upstream's setup_logging opens
        stack.enter_context(patched(open_clip_train.main, "setup_logging", setup_logging))
        # open_clip_train.main saves checkpoints with torch.save(...), straight to their names
        stack.enter_context(patched(torch, "save", atomic_save))
        stack.enter_context(
            patched(open_clip_train.main, "get_latest_checkpoint", latest_checkpoint)
        )
        stack.enter_context(patched(open_clip_train.main, "pt_load", read_resume_checkpoint))
        stack.enter_context(patched(open_clip.factory, "load_state_dict", read_pretrained))
        # open_clip_train.data.get_data finds the WebDataset builder by this name: training
        # data built by training.data (broken data counted, seeded sample order, webdataset 1.x)
        stack.enter_context(
            patched(open_clip_train.data, "get_wds_dataset", webdataset.get_wds_dataset)
        )
        stack.enter_context(
            patched(open_clip_train.main, "train_one_epoch", webdataset.train_one_epoch)
        )
        yield
