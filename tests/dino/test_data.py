import json
import re

import pytest
import torch
import webdataset as wds
from data_utils import (
    add_code_running_files,
    rewrite_members,
    shard_paths,
    spoil_all_but_the_first_sample,
    write_caption_shards,
    write_image_folder,
)
from dino_utils import CLASSES

from open_clip_sparo.dino.augment import MultiCrop, eval_transform
from open_clip_sparo.dino.data import labelled_dataset, shard_urls, train_data
from open_clip_sparo.util.errors import UnusableDataError


def _crops() -> MultiCrop:
    return MultiCrop(32, 16, num_local=1)


def test_image_folder_is_split_between_processes(tmp_path):
    folder = write_image_folder(tmp_path / "train", CLASSES, per_class=5)  # 20 images
    data = [train_data(str(folder), _crops(), 4, 0, rank, 2, seed=0) for rank in range(2)]
    assert data[0].steps_per_epoch == 2  # 10 images a process, batches of 4
    batches = [list(d.batches(epoch=0)) for d in data]
    assert len(batches[0]) == 2
    crops = batches[0][0]
    assert [tuple(c.shape) for c in crops] == [(4, 3, 32, 32)] * 2 + [(4, 3, 16, 16)]
    # the two processes see different images
    assert not torch.equal(batches[0][0][0], batches[1][0][0])


def test_shards_are_resampled_with_a_known_epoch_length(tmp_path):
    pattern = write_caption_shards(tmp_path / "shards", num_shards=2, samples_per_shard=6)
    (tmp_path / "shards" / "sizes.json").unlink()  # no shard sizes: the count must be given
    with pytest.raises(ValueError, match="--train-num-samples"):
        train_data(pattern, _crops(), 4, 0, 0, 1, seed=0)
    data = train_data(pattern, _crops(), 4, 0, 0, 1, seed=0, num_samples=12)
    assert data.steps_per_epoch == 3
    torch.manual_seed(0)
    first = list(data.batches(1))
    torch.manual_seed(0)  # as training does at every epoch
    again = list(data.batches(1))
    assert len(first) == 3
    for a, b in zip(first, again, strict=True):
        torch.testing.assert_close(a[0], b[0])  # same seed and epoch: same stream


def test_sizes_json_gives_the_shard_sizes(tmp_path):
    write_caption_shards(tmp_path, num_shards=2, samples_per_shard=4)
    shards = sorted(p.name for p in tmp_path.glob("*.tar"))
    (tmp_path / "sizes.json").write_text(json.dumps(dict.fromkeys(shards, 4)))
    assert train_data(str(tmp_path), _crops(), 2, 0, 0, 1, seed=0).steps_per_epoch == 4


def test_too_few_images_for_one_batch(tmp_path):
    folder = write_image_folder(tmp_path / "train", CLASSES, per_class=1)
    with pytest.raises(ValueError, match="fewer than one global batch"):
        train_data(str(folder), _crops(), 4, 0, 0, 2, seed=0)


def test_labelled_sets_from_folders_and_cls_shards(tmp_path):
    folder = write_image_folder(tmp_path / "folder", CLASSES, per_class=2)
    images = labelled_dataset(str(folder), eval_transform(32))
    assert [label for _, label in images] == [0, 0, 1, 1, 2, 2, 3, 3]
    shards = tmp_path / "shards"
    shards.mkdir()
    with wds.TarWriter(str(shards / "0.tar")) as sink:
        for i, (image, label) in enumerate(labelled_dataset(str(folder), None)):
            sink.write({"__key__": f"{i:04d}", "png": image, "cls": label})
    assert shard_urls(str(shards)) == [str(shards / "0.tar")]
    samples = list(labelled_dataset(str(shards), eval_transform(32)))
    assert [label for _, label in samples] == [0, 0, 1, 1, 2, 2, 3, 3]
    assert samples[0][0].shape == (3, 32, 32)
    add_code_running_files(shards / "0.tar", tmp_path / "code-ran")
    assert len(list(labelled_dataset(str(shards), eval_transform(32)))) == 8
    assert not (tmp_path / "code-ran").exists()  # before, each sample's pyd file was unpickled


def test_training_shards_are_read_without_unpickling_their_files(tmp_path):
    pattern = write_caption_shards(tmp_path / "shards", num_shards=1, samples_per_shard=8)
    add_code_running_files(shard_paths(tmp_path / "shards")[0], tmp_path / "code-ran")
    (batch,) = list(train_data(pattern, _crops(), 8, 0, 0, 1, seed=0, num_samples=8).batches(0))
    assert batch[0].shape[0] == 8 and not (tmp_path / "code-ran").exists()


def test_missing_data_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="neither a folder"):
        labelled_dataset(str(tmp_path / "nothing"), eval_transform(32))


def test_bad_samples_and_an_unreadable_shard_are_skipped_and_counted(tmp_path, caplog):
    pattern = write_caption_shards(tmp_path, num_shards=3, samples_per_shard=6)
    first, second, third = sorted(tmp_path.glob("*.tar"))

    def damage(name, content):
        if name == f"{1:08d}.txt":
            return name, b"\xff\xfe not UTF-8"  # a caption DINO never reads
        if name == f"{2:08d}.png":
            return None  # no image
        return name, content

    rewrite_members(first, damage)
    rewrite_members(
        second, lambda name, content: (name, b"no image" if ".png" in name else content)
    )
    third.write_bytes(b"")  # an empty shard
    data = train_data(pattern, _crops(), 4, 0, 0, 1, seed=0, num_samples=16)
    batches = list(data.batches(0))  # before: UnicodeDecodeError, then tarfile.ReadError
    assert len(batches) == 4
    counts = data.skipped.take_counts()
    assert counts["no image"] >= 1 and counts["does not decode"] >= 1
    assert counts["unreadable shard"] >= 1
    assert f"(no image) in rank 0 main process: sample '{2:08d}' of {first}" in caplog.text
    assert f"(does not decode) in rank 0 main process: sample '{7:08d}' of {second}" in caplog.text
    assert f"(unreadable shard) in rank 0 main process: {third}" in caplog.text
    assert "UnicodeDecodeError" not in caplog.text


def test_shards_that_give_no_sample_stop_with_the_reason(tmp_path):
    pattern = write_caption_shards(tmp_path, num_shards=2, samples_per_shard=4)
    for shard in tmp_path.glob("*.tar"):
        shard.write_bytes(b"not a tar file" * 10)
    data = train_data(pattern, _crops(), 4, 0, 0, 1, seed=0, num_samples=8)
    with pytest.raises(
        UnusableDataError,
        match=r"not one sample in 100 shards in a row, drawn by rank 0 main process \(the last "
        r".*\.tar\); the warnings above say why each could not be read, .*; check --data\.",
    ):
        list(data.batches(0))  # instead of resampling unreadable shards forever


@pytest.mark.parametrize("damage", ["no image", "does not decode"])
def test_shards_without_one_usable_image_stop_with_the_reason(tmp_path, damage):
    """Before, images that do not decode were resampled forever: the stop counted a sample with
    an image file as usable before decoding it."""
    pattern = write_caption_shards(tmp_path, num_shards=2, samples_per_shard=8)
    for shard in tmp_path.glob("*.tar"):
        rewrite_members(
            shard,
            lambda name, content: (
                ((name + "-not", content) if damage == "no image" else (name, b"not a PNG"))
                if name.endswith(".png")
                else (name, content)
            ),
        )
    data = train_data(pattern, _crops(), 4, 0, 0, 1, seed=0, num_samples=16)
    with pytest.raises(UnusableDataError) as error:
        list(data.batches(0))
    assert re.fullmatch(
        r"not one usable training image in 1,000 in a row, drawn by rank 0 main process \(the "
        r"last from .*\.tar\); the warnings above say why each was skipped\. Images go under "
        r"'jpg', 'jpeg', 'png' or 'webp' and must decode; check --data\.",
        str(error.value),
    )
    assert data.skipped.take_counts()[damage] > 1_000  # past the shuffle buffer (1,000 more read)


def test_shards_with_one_usable_image_in_sixteen_train(tmp_path):
    """About 2,000 images read for a batch of 128: past where the stream would stop if images
    that do not decode counted after one that does."""
    pattern = write_caption_shards(tmp_path, num_shards=2, samples_per_shard=8)
    spoil_all_but_the_first_sample(
        tmp_path,
        lambda name, content: (name, b"not a PNG" if name.endswith(".png") else content),
    )
    data = train_data(pattern, _crops(), 128, 0, 0, 1, seed=0, num_samples=128)
    (batch,) = list(data.batches(0))
    assert len(batch) == 3 and all(crop.shape[0] == 128 for crop in batch)  # 2 global, 1 local


def test_a_shard_whose_first_images_do_not_decode_trains(tmp_path):
    """The only shard: 2,100 images that do not decode, then 400 that do; before, the stream
    stopped past the buffer (1,000) and the count (1,000), before reaching them."""
    pattern = write_caption_shards(tmp_path, num_shards=1, samples_per_shard=2_500)
    rewrite_members(
        shard_paths(tmp_path)[0],
        lambda name, content: (
            (name, b"not a PNG")
            if name.endswith(".png") and int(name.split(".")[0]) < 2_100
            else (name, content)
        ),
    )
    data = train_data(pattern, _crops(), 4, 0, 0, 1, seed=0, num_samples=4)
    (batch,) = list(data.batches(0))
    assert all(crop.shape[0] == 4 for crop in batch)


def test_bad_sizes_json_names_the_file(tmp_path):
    pattern = write_caption_shards(tmp_path, num_shards=1, samples_per_shard=4)
    (tmp_path / "sizes.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"sizes.json is not valid JSON"):
        train_data(pattern, _crops(), 2, 0, 0, 1, seed=0)
