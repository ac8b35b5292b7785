from contextlib import ExitStack

import open_clip_train.data
import pytest
from data_utils import write_caption_shards
from webdataset.shardlists import expand_urls
from webdataset.tariterators import tar_file_expander

from training.compat import pinned_stack_fixes
from training.internals import REQUIRED, missing_names


def read_training_samples(pattern: str) -> list[dict]:
    shards = [{"url": url} for url in expand_urls(pattern)]
    return list(open_clip_train.data.tarfile_to_samples_nothrow(shards))


def test_every_shard_reaches_the_training_pipeline_whole(tmp_path):
    pattern = write_caption_shards(tmp_path, num_shards=3, samples_per_shard=4)
    with pinned_stack_fixes():
        samples = read_training_samples(pattern)
    assert [s["__key__"] for s in samples] == [f"{i:08d}" for i in range(12)]
    assert all({"jpg", "txt"} <= set(s) for s in samples)


def test_the_cause_webdataset_1_marks_shard_ends_open_clip_train_does_not_expect(tmp_path):
    pattern = write_caption_shards(tmp_path, num_shards=2, samples_per_shard=2)
    with ExitStack() as stack:
        streams = [
            {"url": url, "stream": stack.enter_context(open(url, "rb"))}
            for url in expand_urls(pattern)
        ]
        files = list(tar_file_expander(streams))
    if {} not in files:
        pytest.skip("this webdataset (0.2.x) yields no end-of-shard markers")
    assert files.count({}) == 2
    with pytest.raises(KeyError, match="fname"):
        read_training_samples(pattern)


def test_the_installed_open_clip_train_has_every_hooked_name():
    assert missing_names() == []
    assert "tar_file_expander" in REQUIRED["open_clip_train.data"]
