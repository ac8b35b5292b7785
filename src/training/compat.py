"""Fixes for the supported stack (open_clip_train 3.x, webdataset 0.2 and 1.x, PyTorch 2.x,
NumPy 2), active during a run (docs/compatibility.md).

Each fix replaces one or two names for the duration of :func:`pinned_stack_fixes`, says in one
line which upstream behaviour it works around, and is applied only where the installed release
has that behaviour (``NUMPY_2``, ``WEBDATASET_1``; the others hold for every supported release).
"""

from __future__ import annotations

import importlib.metadata
import logging
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from typing import Any

import numpy as np
import open_clip.factory
import open_clip_train.data
import open_clip_train.logger
import open_clip_train.main
import open_clip_train.train
import open_clip_train.zero_shot
import torch
from open_clip_train.data import DataInfo, get_wds_dataset
from torch.nn.parallel import DistributedDataParallel

from open_clip_sparo.util.files import atomic_save

from .checkpoints import latest_checkpoint, read_pretrained, read_resume_checkpoint
from .data_faults import SkippedSamples
from .patching import patched, upstream_call
from .sample_order import seed_sample_shuffle
from .shards import repeat_every_pass

# the releases a repair applies to (docs/compatibility.md)
NUMPY_2 = np.lib.NumpyVersion(np.__version__) >= "2.0.0"
WEBDATASET_1 = int(importlib.metadata.version("webdataset").split(".")[0]) >= 1


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


class WebDatasetTraining:
    """open_clip_train's WebDataset training data, with broken data counted and a reproducible
    sample order.

    :meth:`get_wds_dataset` builds the training pipeline with :class:`SkippedSamples` counting
    its skips and with the sample shuffle seeded (``sample_order``); :meth:`train_one_epoch`
    reports the skips after each epoch. Evaluation data is built as upstream builds it.
    """

    def __init__(self) -> None:
        self.skipped = SkippedSamples()

    def get_wds_dataset(self, *args: Any, **kwargs: Any) -> DataInfo:
        call = upstream_call(get_wds_dataset, args, kwargs)
        if not call["is_train"]:
            return get_wds_dataset(*args, **kwargs)
        run_args = call["args"]
        all_shards = open_clip_train.data.expand_urls(run_args.train_data)[0]
        with self.skipped.counting(run_args.rank, all_shards):
            data = get_wds_dataset(*args, **kwargs)
        seed_sample_shuffle(data, run_args.seed, run_args.rank)
        if WEBDATASET_1:  # 1.x stops repeating after an empty pass: a rank waits forever
            repeat_every_pass(data)
        return data

    def train_one_epoch(self, *args: Any, **kwargs: Any) -> Any:
        """open_clip_train's ``train_one_epoch``, then the epoch's skips reported."""
        result = open_clip_train.train.train_one_epoch(*args, **kwargs)
        call = upstream_call(open_clip_train.train.train_one_epoch, args, kwargs)
        self.skipped.report_epoch(call["epoch"], call["args"])
        return result


@contextmanager
def pinned_stack_fixes() -> Iterator[None]:
    """Inside the block, open_clip_train runs with the fixes above and those of
    ``checkpoints``, ``data_faults`` and ``sample_order``."""
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
        # open_clip_train.data.get_data finds the WebDataset builder by this name
        stack.enter_context(
            patched(open_clip_train.data, "get_wds_dataset", webdataset.get_wds_dataset)
        )
        stack.enter_context(
            patched(open_clip_train.main, "train_one_epoch", webdataset.train_one_epoch)
        )
        yield
