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

from open_clip_train.data import group_by_keys_nothrow, log_and_continue, url_opener
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
