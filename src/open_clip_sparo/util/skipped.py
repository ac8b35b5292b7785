"""Skipped training data: counted per reason, each skip logged, the counts reported per epoch.

One counter serves the CLIP and the DINO training pipelines. Its counts live in memory shared
with the DataLoader worker processes (created before they fork or spawn), so the main process
reports every worker's skips; the report sums them over ranks.
"""

from __future__ import annotations

import logging
import multiprocessing
from collections.abc import Callable, Sequence
from typing import Any

from torch.utils.data import get_worker_info


def describe_sample(sample: dict[str, Any]) -> str:
    """``sample '<key>' of <shard>``, for messages."""
    return f"sample {sample.get('__key__')!r} of {sample.get('__url__')}"


def this_process() -> str:
    """`` main process`` or `` loader worker N``, for messages."""
    worker = get_worker_info()
    return " main process" if worker is None else f" loader worker {worker.id}"


class SkipCounter:
    """Skips per reason of one rank's training pipeline (its main process and loader workers).

    The pipeline reads one shard at a time (:meth:`start_shard`) and decodes one sample at a
    time (:meth:`note_sample`), so the handlers :meth:`shard_failed` and :meth:`decode_failed`
    know which shard or sample an error belongs to. A shard that cannot be opened or read to its
    end counts once (a truncated shard raises twice); the samples after the damage are lost.
    """

    def __init__(
        self, reasons: Sequence[str], rank: int = 0, logger: logging.Logger | None = None
    ) -> None:
        self.reasons, self.rank = tuple(reasons), rank
        self._log = logger or logging.getLogger()
        self._counts = multiprocessing.Array("q", len(self.reasons))  # shared with workers
        self._shard, self._shard_broken, self._sample = "", False, ""

    def skip(self, reason: str, detail: str) -> None:
        """Count one skip of ``reason`` and log it with ``detail``, the rank and the process."""
        with self._counts.get_lock():
            self._counts[self.reasons.index(reason)] += 1
        self._log.warning(
            f"Skipped training data ({reason}) in rank {self.rank}{this_process()}: {detail}"
        )

    def start_shard(self, url: str) -> None:
        """The pipeline begins reading the shard ``url``."""
        self._shard, self._shard_broken = url, False

    def shard_failed(self, error: Exception) -> bool:
        """Handler of the shard reader: skips the rest of the current shard (counted once)."""
        if not self._shard_broken:
            self._shard_broken = True
            self.skip("unreadable shard", f"{self._shard}, skipping the rest of it: {error!r}")
        return True

    def note_sample(self, sample: dict[str, Any]) -> None:
        """The sample the decoder gets next: the one :meth:`decode_failed` names."""
        self._sample = describe_sample(sample)

    def decode_failed(self, error: Exception) -> bool:
        """Handler of the decode stage: skips the sample."""
        self.skip("does not decode", f"{self._sample}: {error!r}")
        return True

    def take_counts(self) -> dict[str, int]:
        """This rank's counts per reason since the last call."""
        with self._counts.get_lock():
            counts = dict(zip(self.reasons, self._counts[:], strict=True))
            self._counts[:] = [0] * len(self.reasons)
        return counts

    def report(
        self,
        epoch: int,
        sum_over_ranks: Callable[[list[int]], list[int]] | None = None,
        log: bool = True,
    ) -> None:
        """Log the skips of ``epoch``, if any; every rank calls this, ``sum_over_ranks`` sums
        the counts of all ranks (None: one rank), and the rank with ``log`` writes them."""
        counts = list(self.take_counts().values())
        if sum_over_ranks is not None:
            counts = sum_over_ranks(counts)
        if log and any(counts):
            summary = ", ".join(
                f"{reason}: {count}"
                for reason, count in zip(self.reasons, counts, strict=True)
                if count
            )
            self._log.warning(
                f"Skipped training data in epoch {epoch}: {summary} (a warning names each one, "
                "in the log or on the standard error of its rank)"
            )
