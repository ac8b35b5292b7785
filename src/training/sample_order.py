"""A reproducible sample order for open_clip_train's WebDataset training data.

open_clip_train shuffles shards with a generator seeded from ``--seed`` and the epoch, but then
shuffles samples with ``wds.shuffle(bufsize, initial)``, whose generator webdataset seeds from the
process id and the clock: two runs with the same ``--seed`` see their samples in different orders.
:func:`seed_sample_shuffle` gives that stage a generator seeded from ``--seed``, the rank, the
loader worker and the epoch instead.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Iterator
from typing import Any

import webdataset as wds
from open_clip_train.data import DataInfo, SharedEpoch
from torch.utils.data import get_worker_info
from webdataset.filters import FilterFunction

from .internals import unsupported_message


class SeededShuffle(wds.PipelineStage):
    """``wds.shuffle(bufsize, initial)`` with a generator seeded per (seed, rank, loader worker,
    epoch), read when the stage starts, as open_clip_train's shard shuffle reads the epoch."""

    def __init__(
        self, bufsize: int, initial: int, seed: int, rank: int, epoch: SharedEpoch
    ) -> None:
        self.bufsize, self.initial = bufsize, initial
        self.seed, self.rank, self.epoch = seed, rank, epoch

    def run(self, src: Iterable[Any]) -> Iterator[Any]:
        worker = get_worker_info()
        worker_id = 0 if worker is None else worker.id
        # a str seed is hashed with SHA-512: the same in every process, whatever PYTHONHASHSEED
        rng = random.Random(f"{self.seed}/{self.rank}/{worker_id}/{self.epoch.get_value()}")
        return wds.shuffle(bufsize=self.bufsize, initial=self.initial, rng=rng)(src)


def seed_sample_shuffle(data: DataInfo, seed: int, rank: int) -> None:
    """Seed the sample shuffle of open_clip_train's WebDataset training ``data`` in place."""
    # open_clip_train's wds.WebLoader is a pipeline over one DataLoader of the dataset
    pipeline = data.dataloader.pipeline[0].dataset.pipeline
    unseeded = [
        index
        for index, stage in enumerate(pipeline)
        if isinstance(stage, FilterFunction)
        and stage.f is wds.shuffle.f
        and not stage.args
        and set(stage.kw) == {"bufsize", "initial"}  # no rng given
    ]
    if len(unseeded) != 1:
        raise RuntimeError(
            unsupported_message(
                "expected one unseeded sample shuffle in open_clip_train's WebDataset pipeline, "
                f"found {len(unseeded)}"
            )
        )
    shuffle = pipeline[unseeded[0]]
    pipeline[unseeded[0]] = SeededShuffle(
        **shuffle.kw, seed=seed, rank=rank, epoch=data.shared_epoch
    )
