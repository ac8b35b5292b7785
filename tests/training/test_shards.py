from contextlib import ExitStack

import open_clip_train.data
import pytest
import webdataset as wds
from data_utils import write_caption_shards
from webdataset.shardlists import expand_urls
from webdataset.tariterators import tar_file_expander

from training.shards import RepeatedPipeline, tarfile_to_samples_nothrow


def shard_list(pattern: str) -> list[dict]:
    return [{"url": url} for url in expand_urls(pattern)]


def test_every_shard_reaches_the_grouping_whole(tmp_path):
    pattern = write_caption_shards(tmp_path, num_shards=3, samples_per_shard=4)
    samples = list(tarfile_to_samples_nothrow(shard_list(pattern)))
    assert [s["__key__"] for s in samples] == [f"{i:08d}" for i in range(12)]
    assert all({"png", "txt"} <= set(s) for s in samples)


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
        list(open_clip_train.data.tarfile_to_samples_nothrow(shard_list(pattern)))


def test_passes_repeat_after_an_empty_one():
    """webdataset 1.x stops repeating after an empty pass (a hang under DDP); 0.2.x does not."""
    passes = []

    def one_pass():
        passes.append(len(passes))
        return iter([] if len(passes) == 1 else ["a", "b"])  # the first pass yields nothing

    pipeline = wds.DataPipeline(one_pass).with_epoch(3)
    pipeline.__class__ = RepeatedPipeline
    assert list(pipeline) == ["a", "b", "a"]
    assert passes == [0, 1, 2]
