"""open_clip_train's shard reader, for webdataset 0.2.x and 1.x alike.

webdataset 1.x ends each shard's files with an empty end-of-shard marker, which its own
``group_by_keys`` expects. open_clip_train's ``group_by_keys_nothrow``, written for 0.2.x, reads
every item as a file and raises ``KeyError: 'fname'`` on the first marker, which ends the training
data after one shard. It closes a sample when the key changes, so without the markers it groups
files exactly as under 0.2.x, which yields none.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

import webdataset as wds
from open_clip_train.data import DataInfo, group_by_keys_nothrow, log_and_continue, url_opener
from webdataset.tariterators import tar_file_expander


def without_markers(files: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """The files of the shards, end-of-shard markers (empty dicts) dropped."""
    return (item for item in files if item)


def tarfile_to_samples_nothrow(
    src: Iterable[dict[str, Any]], handler: Callable[[Exception], bool] = log_and_continue
) -> Iterator[dict[str, Any]]:
    """open_clip_train's ``tarfile_to_samples_nothrow`` (its own opener, webdataset's expander,
    its grouping), with the expander's end-of-shard markers dropped before the grouping."""
    streams = url_opener(src, handler=handler)
    files = without_markers(tar_file_expander(streams, handler=handler))
    return group_by_keys_nothrow(files, handler=handler)


class RepeatedPipeline(wds.DataPipeline):
    """A ``wds.DataPipeline`` that repeats its passes as webdataset 0.2.x does, also after a pass
    that yields nothing.

    open_clip_train's training pipeline repeats passes until the epoch has its batches
    (``with_epoch``). webdataset 1.x stops repeating after an empty pass, so a loader worker
    whose share of the shards is unreadable ends its epoch with no batch while the other ranks
    wait for it in DDP: the run hangs. Repeated, the pass after an empty one reads all the run's
    shards (``data_faults.SkippedSamples.read_shards``), which stops the run with a message if
    they too yield nothing.
    """

    def iterator(self) -> Iterator[Any]:
        for _ in range(self.repetitions):
            yield from self.iterator1()


def repeat_every_pass(data: DataInfo) -> None:
    """Make open_clip_train's WebDataset training ``data`` a :class:`RepeatedPipeline`."""
    # open_clip_train's wds.WebLoader is a pipeline over one DataLoader of the dataset
    dataset = data.dataloader.pipeline[0].dataset
    if type(dataset) is not wds.DataPipeline:
        raise RuntimeError(
            f"open_clip_train's training data is a {type(dataset).__name__}, not the "
            "wds.DataPipeline this package repeats; see docs/compatibility.md for the supported "
            "versions."
        )
    dataset.__class__ = RepeatedPipeline
