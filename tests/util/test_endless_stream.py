"""open_clip_sparo.util.endless_stream: when an endless stream of training samples stops."""

from __future__ import annotations

import pytest

from open_clip_sparo.util.endless_stream import (
    SHARDS_UNUSABLE_IN_A_ROW,
    SHARDS_WITHOUT_SAMPLE,
    UNUSABLE_IN_A_ROW,
    EndlessStreamCheck,
)
from open_clip_sparo.util.errors import UnusableDataError

BUFFER = 50


def check(num_shards: int) -> EndlessStreamCheck:
    shards = [f"{index:06d}.tar" for index in range(num_shards)]
    return EndlessStreamCheck(shards, BUFFER, "training sample", "by rank 3", "fix it.", "--data")


def read_unusable(stream: EndlessStreamCheck, shards: list[str], count: int) -> None:
    """``count`` unusable samples read and out of the buffer, from ``shards`` in turn, each
    opened for its sample."""
    for index in range(count):
        sample = {"__url__": shards[index % len(shards)]}
        stream.shard_opened(sample["__url__"])
        stream.sample_read(sample)
        stream.sample_past_buffer(sample)


def test_unusable_samples_in_a_row_from_every_shard_stop_past_the_buffer():
    stream = check(2)
    read_unusable(stream, ["000000.tar", "000001.tar"], BUFFER + UNUSABLE_IN_A_ROW)
    with pytest.raises(UnusableDataError) as error:
        read_unusable(stream, ["000001.tar"], 1)
    assert str(error.value) == (
        f"not one usable training sample in {UNUSABLE_IN_A_ROW:,} in a row, drawn by rank 3 main "
        "process (the last from 000001.tar); fix it."
    )


def test_one_large_unusable_shard_among_usable_ones_does_not_stop():
    stream = check(2)
    read_unusable(stream, ["000000.tar"], 10 * (BUFFER + UNUSABLE_IN_A_ROW))


def test_many_shards_stop_after_unusable_samples_from_enough_of_them():
    stream = check(50)
    shards = [f"{index:06d}.tar" for index in range(SHARDS_UNUSABLE_IN_A_ROW - 1)]
    read_unusable(stream, shards, 2 * (BUFFER + UNUSABLE_IN_A_ROW))  # too few shards
    read_unusable(stream, ["000049.tar"], 1)
    with pytest.raises(UnusableDataError, match="not one usable training sample in 1,000"):
        read_unusable(stream, shards, 1)


@pytest.mark.parametrize("num_shards", [2, 30])
def test_shards_in_a_row_without_a_sample_stop(num_shards):
    stream = check(num_shards)
    allowed = max(SHARDS_WITHOUT_SAMPLE, 10 * num_shards)
    for index in range(allowed):
        stream.shard_opened(f"{index % num_shards:06d}.tar")
    stream.sample_read({"__url__": "000000.tar"})  # a sample restarts the count
    for index in range(allowed):
        stream.shard_opened(f"{index % num_shards:06d}.tar")
    with pytest.raises(UnusableDataError) as error:
        stream.shard_opened("000000.tar")
    assert str(error.value) == (
        f"not one sample in {allowed:,} shards in a row, drawn by rank 3 main process (the last "
        f"{(allowed - 1) % num_shards:06d}.tar); the warnings above say why each could not be "
        "read, and a shard without one holds no sample; check --data."
    )


def test_after_a_usable_sample_unusable_ones_never_stop_the_stream():
    """With half of 100 large shards unusable, about one draw in 1,000 starts a run of 10 of
    those; before, such a run stopped a stream that trains on the other half."""
    stream = check(100)
    read_unusable(stream, ["000000.tar", "000001.tar"], BUFFER + UNUSABLE_IN_A_ROW)
    stream.sample_usable()
    shards = [f"{index:06d}.tar" for index in range(SHARDS_UNUSABLE_IN_A_ROW)]
    read_unusable(stream, shards, 10 * (BUFFER + UNUSABLE_IN_A_ROW))


def test_unusable_samples_stop_only_once_their_shards_were_read_to_the_end():
    """A shard whose first samples are unusable, beyond the buffer and the count: its usable
    ones come later; before, the stream stopped before reaching them."""
    stream = check(1)
    stream.shard_opened("000000.tar")
    for _ in range(2 * (BUFFER + UNUSABLE_IN_A_ROW)):
        sample = {"__url__": "000000.tar"}
        stream.sample_read(sample)
        stream.sample_past_buffer(sample)
    stream.shard_opened("000000.tar")  # drawn again: read to its end, not one sample usable
    with pytest.raises(UnusableDataError, match="not one usable training sample in 1,000"):
        stream.sample_read({"__url__": "000000.tar"})
