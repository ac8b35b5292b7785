"""Broken training data: skipped, counted per reason, and reported in the run's log.

open_clip_train's WebDataset training pipeline already skips what it cannot use, but unevenly:
samples without a caption or an image are dropped without a word, and an unreadable shard or a
sample that does not decode only logs the exception. The stages and handlers of
:class:`SkippedSamples`, which the training pipeline (``training.data``) is built from, log every
skip with the sample's key, shard and loader worker, and count it per reason in shared memory, so
that the counts of the DataLoader worker processes reach the main process;
:meth:`SkippedSamples.report_epoch` logs them after each epoch, summed over ranks. Data that
cannot give the run a batch stops it with an :class:`UnusableDataError` saying what to change,
where the run would otherwise wait forever.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from typing import Any

from open_clip_train.data import filter_no_caption_or_no_image
from open_clip_train.distributed import all_gather_object, is_master

from open_clip_sparo.util.endless_stream import EndlessStreamCheck
from open_clip_sparo.util.errors import UnusableDataError
from open_clip_sparo.util.skipped import SkipCounter, describe_sample, this_process

REASONS = ("no caption", "no image", "does not decode", "unreadable shard")


class SkippedSamples(SkipCounter):
    """Skipped training data per reason (:class:`~open_clip_sparo.util.skipped.SkipCounter`).

    A sample is skipped when it lacks a caption (``txt``) or an image (``jpg``, ``png``, ``jpeg``,
    ``webp``), or when one of its files does not decode. A shard that cannot be opened, or read to
    its end (truncated, corrupt), counts once as ``unreadable shard``: the samples after the damage
    are lost, and how many there were is unknown.
    """

    def __init__(self) -> None:
        super().__init__(REASONS)
        # the shards of the current pass over the data (None: no pass yet), how many samples it
        # delivered, and how many make a batch (a pass with fewer yields none)
        self._pass_shards: list[str] | None = None
        self._delivered = 0
        self._batch_size = 1
        # every shard of the run, and whether this process reads them all (a pass over its share
        # yielded no batch)
        self._all_shards: list[str] = []
        self._all_passes = False
        # when a resampled run's endless pass stops (None: passes end)
        self._endless: EndlessStreamCheck | None = None

    def start_run(
        self,
        rank: int,
        all_shards: Iterable[str],
        batch_size: int,
        resampled_shuffle_size: int | None = None,
    ) -> None:
        """The pipeline of rank ``rank`` counts here; ``all_shards`` are the run's shards (those it
        draws, in a resampled run), all ranks' and workers'; it batches ``batch_size`` samples,
        dropping a partial batch. In a resampled run (one pass that never ends),
        ``resampled_shuffle_size`` is the size of the sample shuffle buffer between
        :meth:`samples_read` and :meth:`has_caption_and_image`."""
        self.rank, self._all_shards, self._batch_size = rank, list(all_shards), batch_size
        if resampled_shuffle_size is not None:
            self._endless = EndlessStreamCheck(
                self._all_shards,
                resampled_shuffle_size,
                item="training sample",
                drawn_by=f"with --dataset-resampled by rank {rank}",
                sample_advice=_SAMPLES_NEED,
                data_option="--train-data",
            )

    def pass_shards(self, shards: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        """Pipeline stage before the shard reader: the shards of one pass, each noted as it is
        opened (the reader's handler :meth:`shard_failed` counts it once if it cannot be read to
        the end).

        The pipeline calls this at the start of each pass over the data. The shards are split
        between ranks and loader workers and passes repeat until the epoch has its batches, so a
        pass that delivered fewer samples than one batch (and so no batch) would repeat forever.
        After such a pass over its own share, a worker reads all the run's shards instead (with a
        warning); when a pass over all of them yields no batch either, the run cannot train and
        this raises an ``UnusableDataError`` saying what to change.
        """
        delivered = self._delivered
        if self._pass_shards is not None and delivered < self._batch_size:
            if self._all_passes or set(self._pass_shards) >= set(self._all_shards):
                where = (
                    f"in a whole pass over the run's {len(self._pass_shards)} shard(s) "
                    f"({_first(self._pass_shards)}; read by rank {self.rank}{this_process()})"
                )
                if delivered:
                    raise UnusableDataError(
                        f"only {delivered} usable training sample(s) {where}, fewer than one "
                        f"batch of --batch-size {self._batch_size} (training drops a partial "
                        f"batch): lower --batch-size to at most {delivered}, or add data."
                    )
                raise UnusableDataError(f"not one usable training sample {where}; {_SAMPLES_NEED}")
            usable = (
                f"{delivered} usable training sample(s), fewer than one batch of --batch-size "
                f"{self._batch_size},"
                if delivered
                else "not one usable training sample"
            )
            logging.warning(
                f"rank {self.rank}{this_process()}: {usable} in its share of the shards "
                f"({_first(self._pass_shards)}); it reads all {len(self._all_shards)} shards of "
                "the run instead, so some samples come twice in an epoch."
            )
            self._all_passes = True
        if self._all_passes:
            shards = ({"url": url} for url in self._all_shards)
        self._pass_shards, self._delivered = [], 0
        return self._track(shards)

    def samples_read(self, samples: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        """Pipeline stage after the shard reader: in a resampled run, stops it when too many
        samples in a row are unusable (:mod:`open_clip_sparo.util.endless_stream`)."""
        for sample in samples:
            if self._endless is not None:
                self._endless.sample_read(sample)
            yield sample

    def has_caption_and_image(self, sample: dict[str, Any]) -> bool:
        """open_clip_train's ``filter_no_caption_or_no_image``, counting what it drops (the
        predicate of the pipeline's ``wds.select``)."""
        if self._endless is not None:
            self._endless.sample_past_buffer(sample)
        if filter_no_caption_or_no_image(sample):
            # the decode stage pulls samples one at a time through this filter
            self.note_sample(sample)
            return True
        self.skip("no caption" if "txt" not in sample else "no image", describe_sample(sample))
        return False

    def samples_usable(self, samples: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        """Pipeline stage after the decoder: counts the samples the batches are made of."""
        for sample in samples:
            self._delivered += 1
            if self._endless is not None:
                self._endless.sample_usable()
            yield sample

    def report_epoch(self, epoch: int, args: Any) -> None:
        """Log the skips of ``epoch`` summed over ranks (every rank calls this), if any."""

        def sum_over_ranks(counts: list[int]) -> list[int]:
            return [sum(rank) for rank in zip(*all_gather_object(args, counts), strict=True)]

        super().report(epoch, sum_over_ranks if args.distributed else None, is_master(args))

    def _track(self, shards: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for shard in shards:
            if self._endless is not None:
                self._endless.shard_opened(shard["url"])
            self.start_shard(shard["url"])
            self._pass_shards.append(shard["url"])
            yield shard


_SAMPLES_NEED = (
    "the warnings above say why each sample was skipped. Samples need a 'txt' caption and a "
    "'jpg', 'png', 'jpeg' or 'webp' image; check --train-data."
)


def _first(shards: list[str], count: int = 3) -> str:
    return ", ".join(shards[:count]) + (", ..." if len(shards) > count else "")
