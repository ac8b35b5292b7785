"""util.skipped: the one counter of skipped training data and its report."""

from __future__ import annotations

import logging

import pytest

from open_clip_sparo.util.skipped import SkipCounter


def test_skips_are_counted_logged_and_reported_once(caplog: pytest.LogCaptureFixture) -> None:
    counter = SkipCounter(("no image", "does not decode", "unreadable shard"), rank=3)
    counter.start_shard("a.tar")
    counter.shard_failed(OSError("cut"))
    counter.shard_failed(OSError("again"))  # the same shard counts once
    counter.note_sample({"__key__": "007", "__url__": "b.tar"})
    assert counter.decode_failed(ValueError("bad")) is True
    assert "(unreadable shard) in rank 3 main process: a.tar, skipping" in caplog.text
    assert "(does not decode) in rank 3 main process: sample '007' of b.tar" in caplog.text
    with caplog.at_level(logging.WARNING):
        counter.report(5, sum_over_ranks=lambda counts: [2 * n for n in counts])
    assert (
        "Skipped training data in epoch 5: does not decode: 2, unreadable shard: 2" in caplog.text
    )
    assert counter.take_counts() == {"no image": 0, "does not decode": 0, "unreadable shard": 0}


def test_nothing_skipped_reports_nothing(caplog: pytest.LogCaptureFixture) -> None:
    counter = SkipCounter(("no image",))
    counter.skip("no image", "x")
    counter.report(0, log=False)  # another rank's turn to write
    counter.report(1)
    assert "in epoch" not in caplog.text
