"""Broken training data: skipped, counted per reason, and reported in the run's log.

open_clip_train's WebDataset training pipeline already skips what it cannot use, but unevenly:
samples without a caption or an image are dropped without a word, and an unreadable shard or a
sample that does not decode only logs the exception. Pipelines built inside
:meth:`SkippedSamples.counting` log every skip with the sample's key, shard and loader worker, and
count it per reason in shared memory, so that the counts of the DataLoader worker processes reach
the main process; :meth:`SkippedSamples.report` logs them after each epoch, summed over ranks.
"""

from __future__ import annotations

import logging
import multiprocessing
from collections.abc import Iterable, Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import open_clip_train.data
from open_clip_train.data import filter_no_caption_or_no_image
from open_clip_train.distributed import all_gather_object, is_master
from torch.utils.data import get_worker_info

from .patching import patched
from .shards import tarfile_to_samples_nothrow

REASONS = ("no caption", "no image", "does not decode", "unreadable shard")


class SkippedSamples:
    """Counts of skipped training data per reason, shared by a rank's processes.

    A sample is skipped when it lacks a caption (``txt``) or an image (``jpg``, ``png``, ``jpeg``,
    ``webp``), or when one of its files does not decode. A shard that cannot be opened, or read to
    its end (truncated, corrupt), counts once as ``unreadable shard``: the samples after the damage
    are lost, and how many there were is unknown.
    """

    def __init__(self) -> None:
        self._counts = multiprocessing.Array("q", len(REASONS))  # shared with loader workers
        self._rank = 0
        # what the pipeline in this process is reading: the shard, and the last sample let through
        self._shard, self._shard_broken, self._sample = "", False, ""
        # the shards of the current pass over the data (None: no pass yet), and how many samples
        # it delivered
        self._pass_shards: list[str] | None = None
        self._delivered = 0
        # every shard of the run, and whether this process reads them all (its share had no
        # usable sample)
        self._all_shards: list[str] = []
        self._all_passes = False

    @contextmanager
    def counting(self, rank: int, all_shards: Iterable[str] = ()) -> Iterator[None]:
        """Inside the block, open_clip_train builds WebDataset pipelines of rank ``rank`` that
        skip through here; ``all_shards`` are the run's shards, all ranks' and workers'."""
        self._rank, self._all_shards = rank, list(all_shards)
        data = open_clip_train.data
        with ExitStack() as stack:
            stack.enter_context(patched(data, "tarfile_to_samples_nothrow", self.read_shards))
            stack.enter_context(
                patched(data, "filter_no_caption_or_no_image", self.has_caption_and_image)
            )
            # in the training pipeline only the decode stage uses this handler by name
            stack.enter_context(patched(data, "log_and_continue", self.decode_failed))
            yield

    def read_shards(self, shards: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        """open_clip_train's ``tarfile_to_samples_nothrow`` (as ``shards`` reads webdataset 1.x
        shards), counting each shard it cannot read to the end once.

        The pipeline calls this at the start of each pass over the data. open_clip_train splits
        the shards between ranks and loader workers and repeats passes until the epoch has its
        batches, so a pass that delivered no sample would repeat forever. After such a pass
        over its own share, a worker reads all the run's shards instead (with a warning); when
        a pass over all of them delivers nothing, the run has no usable data and this raises a
        ``RuntimeError``.
        """
        if self._pass_shards is not None and self._delivered == 0:
            if self._all_passes or set(self._pass_shards) >= set(self._all_shards):
                raise RuntimeError(
                    f"not one usable training sample in a whole pass over the run's "
                    f"{len(self._pass_shards)} shard(s) ({_first(self._pass_shards)}; read by "
                    f"rank {self._rank}{_process()}); the warnings above say why each sample "
                    "was skipped. Samples need a 'txt' caption and a 'jpg', 'png', 'jpeg' or "
                    "'webp' image; check --train-data."
                )
            logging.warning(
                f"rank {self._rank}{_process()}: not one usable training sample in its share of "
                f"the shards ({_first(self._pass_shards)}); it reads all "
                f"{len(self._all_shards)} shards of the run instead, so some samples come twice "
                "in an epoch."
            )
            self._all_passes = True
        if self._all_passes:
            shards = ({"url": url} for url in self._all_shards)
        self._pass_shards, self._delivered = [], 0
        return tarfile_to_samples_nothrow(self._track(shards), handler=self._shard_failed_at)

    def has_caption_and_image(self, sample: dict[str, Any]) -> bool:
        """open_clip_train's ``filter_no_caption_or_no_image``, counting what it drops."""
        if filter_no_caption_or_no_image(sample):
            self._sample = _describe(sample)
            self._delivered += 1
            return True
        self._skip("no caption" if "txt" not in sample else "no image", _describe(sample))
        return False

    def decode_failed(self, error: Exception) -> bool:
        """Exception handler of the decode stage: counts the sample and goes on."""
        # the decode stage pulls samples one at a time through the filter above, so the sample
        # that failed is the last one the filter let through
        self._delivered -= 1
        self._skip("does not decode", f"{self._sample}: {error!r}")
        return True

    def take_counts(self) -> dict[str, int]:
        """This rank's counts per reason since the last call."""
        with self._counts.get_lock():
            counts = dict(zip(REASONS, self._counts[:], strict=True))
            self._counts[:] = [0] * len(REASONS)
        return counts

    def report(self, epoch: int, args: Any) -> None:
        """Log the skips of ``epoch`` summed over ranks (every rank calls this), if any."""
        counts = self.take_counts()
        if args.distributed:
            gathered = all_gather_object(args, counts)
            counts = {reason: sum(rank[reason] for rank in gathered) for reason in REASONS}
        if is_master(args) and any(counts.values()):
            logging.warning(
                f"Skipped training data in epoch {epoch}: "
                + ", ".join(f"{reason}: {count}" for reason, count in counts.items() if count)
                + " (a warning names each one, in the log or on the standard error of its rank)"
            )

    def _track(self, shards: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for shard in shards:
            self._shard, self._shard_broken = shard["url"], False
            self._pass_shards.append(self._shard)
            yield shard

    def _shard_failed_at(self, error: Exception) -> bool:
        # shards are opened and read one at a time, so the error is in the last one handed out;
        # a truncated shard raises twice (reading the member, then the next header)
        if not self._shard_broken:
            self._shard_broken = True
            self._skip("unreadable shard", f"{self._shard}, skipping the rest of it: {error!r}")
        return True

    def _skip(self, reason: str, detail: str) -> None:
        with self._counts.get_lock():
            self._counts[REASONS.index(reason)] += 1
        logging.warning(
            f"Skipped training data ({reason}) in rank {self._rank}{_process()}: {detail}"
        )


def _process() -> str:
    worker = get_worker_info()
    return " main process" if worker is None else f" loader worker {worker.id}"


def _first(shards: list[str], count: int = 3) -> str:
    return ", ".join(shards[:count]) + (", ..." if len(shards) > count else "")


def _describe(sample: dict[str, Any]) -> str:
    return f"sample {sample.get('__key__')!r} of {sample.get('__url__')}"
