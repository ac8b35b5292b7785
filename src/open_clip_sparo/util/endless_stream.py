"""When an endless stream of training samples can never give a batch: the rule by which both
training pipelines stop (CLIP's with ``--dataset-resampled``, DINO's), where they would otherwise
read forever.

Resampled shards make one pass over the data that never ends, so "a pass gave no batch" never
happens. The stream stops with an :class:`~open_clip_sparo.util.errors.UnusableDataError` instead
when

- before any usable sample, :data:`UNUSABLE_IN_A_ROW` samples past the sample shuffle buffer were
  unusable, and they came from every shard of the run or from :data:`SHARDS_UNUSABLE_IN_A_ROW`
  different ones, each read to its end (a shard's samples are read in a row, so one large bad
  shard, or a shard's bad first half, does not stop a run whose other samples are fine); after
  one, the shards hold a usable sample and, drawn with replacement, fill batches, however many
  unusable ones come in a row; or
- max(:data:`SHARDS_WITHOUT_SAMPLE`, 10 x the run's shards) shards in a row gave no sample.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .errors import UnusableDataError
from .skipped import this_process

UNUSABLE_IN_A_ROW = 1_000
SHARDS_UNUSABLE_IN_A_ROW = 10
SHARDS_WITHOUT_SAMPLE = 100


class EndlessStreamCheck:
    """The stop rule for one process's endless stream of training samples.

    The pipeline reports each shard it opens (:meth:`shard_opened`), each sample read, before the
    shuffle buffer (:meth:`sample_read`), each sample past the buffer (:meth:`sample_past_buffer`)
    and each usable one, after the decoder (:meth:`sample_usable`). ``item`` names a usable sample
    in messages ("training sample"), ``drawn_by`` says how and by whom the stream is drawn ("with
    --dataset-resampled by rank 0"), ``sample_advice`` ends the message when samples are unusable,
    and ``data_option`` is the option that names the data.
    """

    def __init__(
        self,
        shards: Sequence[str],
        shuffle_buffer: int,
        item: str,
        drawn_by: str,
        sample_advice: str,
        data_option: str,
    ) -> None:
        self.num_shards, self.shuffle_buffer = len(set(shards)), shuffle_buffer
        self.item, self.drawn_by = item, drawn_by
        self.sample_advice, self.data_option = sample_advice, data_option
        # whether a sample was usable; before: the samples read, the shards of those past the
        # buffer, and the shards read to their end; the shards opened since the last sample read,
        # and the last shard opened
        self._usable_seen = False
        self._read_before_usable = 0
        self._unusable_shards: set[str] = set()
        self._finished_shards: set[str] = set()
        self._shards_since_sample = 0
        self._last_shard = ""

    def shard_opened(self, url: str) -> None:
        """The stream opens shard ``url``: raises after too many shards in a row without a
        sample."""
        self._shards_since_sample += 1
        if self._shards_since_sample > max(SHARDS_WITHOUT_SAMPLE, 10 * self.num_shards):
            raise UnusableDataError(
                f"not one sample in {self._shards_since_sample - 1:,} shards in a row, drawn "
                f"{self.drawn_by}{this_process()} (the last {self._last_shard}); the warnings "
                "above say why each could not be read, and a shard without one holds no sample; "
                f"check {self.data_option}."
            )
        if self._last_shard and not self._usable_seen:
            self._finished_shards.add(self._last_shard)  # read to its end, or as far as it could
        self._last_shard = url

    def sample_read(self, sample: dict[str, Any]) -> None:
        """A sample read, before the shuffle buffer: raises after too many unusable in a row
        before the first usable one."""
        self._shards_since_sample = 0
        if self._usable_seen:
            return
        self._read_before_usable += 1
        if self._read_before_usable > self.shuffle_buffer + UNUSABLE_IN_A_ROW and len(
            self._unusable_shards & self._finished_shards
        ) >= min(self.num_shards, SHARDS_UNUSABLE_IN_A_ROW):
            raise UnusableDataError(
                f"not one usable {self.item} in {UNUSABLE_IN_A_ROW:,} in a row, drawn "
                f"{self.drawn_by}{this_process()} (the last from {sample.get('__url__')}); "
                f"{self.sample_advice}"
            )

    def sample_past_buffer(self, sample: dict[str, Any]) -> None:
        """A sample out of the shuffle buffer, not yet known to be usable."""
        if not self._usable_seen:
            self._unusable_shards.add(sample.get("__url__"))

    def sample_usable(self) -> None:
        """A sample reached the batches: unusable samples no longer stop the stream."""
        self._usable_seen = True
        self._unusable_shards.clear()
        self._finished_shards.clear()
