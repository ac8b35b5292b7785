"""open_clip_sparo.util.wds_decode: WebDataset decoding that runs no code from the data."""

from __future__ import annotations

import webdataset as wds
from data_utils import add_code_running_files, shard_paths, write_caption_shards

from open_clip_sparo.util.wds_decode import decode_only, pickles_undecoded


def test_decode_only_decodes_the_files_it_is_given_and_leaves_the_rest(tmp_path):
    write_caption_shards(tmp_path, num_shards=1, samples_per_shard=2)
    (shard,) = shard_paths(tmp_path)
    marker = tmp_path / "code-ran"
    add_code_running_files(shard, marker)
    stream = wds.WebDataset(str(shard), shardshuffle=False).compose(
        decode_only("pilrgb", ["png", "txt"], wds.reraise_exception)
    )
    samples = list(stream)
    assert len(samples) == 2 and not marker.exists()
    assert samples[0]["png"].mode == "RGB" and isinstance(samples[0]["txt"], str)
    assert isinstance(samples[0]["pyd"], bytes)


def test_webdataset_unpickles_data_files_except_within_pickles_undecoded(tmp_path):
    write_caption_shards(tmp_path, num_shards=1, samples_per_shard=1)
    (shard,) = shard_paths(tmp_path)
    marker = tmp_path / "code-ran"
    add_code_running_files(shard, marker)

    def decoded() -> dict:
        (sample,) = wds.WebDataset(str(shard), shardshuffle=False).decode("pil")
        return sample

    with pickles_undecoded():
        assert isinstance(decoded()["pyd"], bytes) and not marker.exists()
    decoded()  # the default, as CLIP_benchmark and open_clip_train decode shards
    assert marker.is_dir()
