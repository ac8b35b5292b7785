"""training.data: open_clip_train's WebDataset training data built from webdataset's stages,
with the sample order following --seed and the epoch, under webdataset 0.2.x and 1.x."""

from __future__ import annotations

import json
import os
import subprocess
from argparse import Namespace
from contextlib import ExitStack
from pathlib import Path

import open_clip
import open_clip_train.data
import open_clip_train.main
import pytest
import torch
import webdataset as wds
from data_utils import add_code_running_files, shard_paths, write_caption_shards
from hypothesis import given, settings
from hypothesis import strategies as st
from training_utils import (
    MODEL,
    data_args,
    one_pass,
    run_in_process,
    subprocess_command,
    train_args,
)
from webdataset.shardlists import expand_urls
from webdataset.tariterators import tar_file_expander

from training.data import RepeatedPipeline, WebDatasetTraining, epoch_batches, read_samples

# shards that are never read: building a pipeline opens nothing
UNREAD_SHARDS = "/no/such/folder/{000000..000063}.tar"


def shard_list(pattern: str) -> list[dict]:
    return [{"url": url} for url in expand_urls(pattern)]


def raise_error(error: Exception) -> bool:
    raise error


@pytest.fixture(scope="module")
def transforms() -> tuple:
    _, _, preprocess = open_clip.create_model_and_transforms(MODEL)
    return preprocess, open_clip.get_tokenizer(MODEL)


@pytest.mark.filterwarnings("ignore:This DataLoader will create")  # never started
@settings(max_examples=40, deadline=None)
@given(
    samples=st.integers(1, 5000),
    batch_size=st.integers(1, 64),
    world_size=st.integers(1, 8),
    workers=st.integers(0, 8),
    floor=st.booleans(),
)
def test_batches_and_samples_are_counted_as_upstream_counts_them(
    samples: int, batch_size: int, world_size: int, workers: int, floor: bool
) -> None:
    args = data_args(
        UNREAD_SHARDS,
        train_num_samples=samples,
        batch_size=batch_size,
        world_size=world_size,
        workers=workers,
    )
    ours = WebDatasetTraining().get_wds_dataset(args, None, is_train=True, floor=floor)
    upstream = open_clip_train.data.get_wds_dataset(args, None, is_train=True, floor=floor)
    for name in ("num_batches", "num_samples"):
        assert getattr(ours.dataloader, name) == getattr(upstream.dataloader, name)
    assert ours.dataloader.pipeline[0].num_workers == workers  # the WebLoader's DataLoader
    worker_batches, num_batches, _ = epoch_batches(samples, batch_size, world_size, workers, floor)
    assert num_batches == worker_batches * max(1, workers)


def test_an_epoch_reads_its_batches_from_shards_and_from_resampled_weighted_shards(
    shards: str, transforms: tuple
) -> None:
    first, second = expand_urls(shards)
    for overrides in (
        {},
        {
            "train_data": f"{first}::{second}",
            "dataset_resampled": True,
            "train_data_upsampling_factors": "1::3",
        },
    ):
        args = data_args(shards, train_num_samples=40, batch_size=8, **overrides)
        data = WebDatasetTraining().get_wds_dataset(
            args, transforms[0], is_train=True, tokenizer=transforms[1]
        )
        batches = list(data.dataloader)
        assert len(batches) == data.dataloader.num_batches == 5
        images, texts = batches[0]
        assert images.shape == (8, 3, 64, 64) and len(texts) == 8


def test_evaluation_data_is_upstream_s(shards: str, transforms: tuple) -> None:
    args = data_args(shards, val_data=shards, val_num_samples=64, batch_size=16)
    data = WebDatasetTraining().get_wds_dataset(
        args, transforms[0], is_train=False, tokenizer=transforms[1]
    )
    upstream = open_clip_train.data.get_wds_dataset(
        args, transforms[0], is_train=False, tokenizer=transforms[1]
    )
    assert data.dataloader.num_batches == upstream.dataloader.num_batches == 4
    assert sum(len(images) for images, _ in data.dataloader) == 64


def test_training_data_never_unpickles_a_data_file(tmp_path: Path, transforms: tuple) -> None:
    """Before, WebDataset's default decoder unpickled each sample's ``pyd`` file: a shard could
    run code on the machine that trains."""
    pattern = write_caption_shards(tmp_path / "shards", num_shards=1, samples_per_shard=8)
    add_code_running_files(shard_paths(tmp_path / "shards")[0], tmp_path / "code-ran")
    data = WebDatasetTraining().get_wds_dataset(
        data_args(pattern, batch_size=8), transforms[0], is_train=True, tokenizer=transforms[1]
    )
    images, texts = next(iter(data.dataloader))
    assert len(images) == len(texts) == 8
    assert not (tmp_path / "code-ran").exists()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"train_num_samples": None}, "pass --train-num-samples or put a sizes.json beside"),
        ({"train_data_upsampling_factors": "1"}, "add --dataset-resampled"),
        ({"workers": 33, "world_size": 2}, "64 shard.s. for 33 loader worker.s. in each of 2"),
        # before: an epoch that never ends (with_epoch(0) repeats passes without a limit)
        ({"train_num_samples": 0}, "--train-num-samples 0: an epoch reads at least 1 sample"),
        # before: open_clip_train's AssertionError, with its traceback
        (
            {"dataset_resampled": True, "train_data_upsampling_factors": "1::3"},
            r"--train-data-upsampling-factors 1::3 must give one number per source of "
            r"--train-data \(1, joined by '::'\)",
        ),
        (
            {
                "train_data": "a.tar::b.tar",
                "dataset_resampled": True,
                "train_data_upsampling_factors": "1::x",
            },
            r"must give one number per source of --train-data \(2, joined by '::'\), e.g. 1::1",
        ),
    ],
    ids=[
        "no sample count",
        "weights without resampling",
        "fewer shards than workers",
        "no samples",
        "weights for other sources",
        "a weight that is no number",
    ],
)
def test_bad_arguments_are_named_with_the_fix(overrides: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        WebDatasetTraining().get_wds_dataset(
            data_args(UNREAD_SHARDS, **overrides), None, is_train=True
        )


def test_a_run_with_more_loader_workers_than_shards_stops_with_one_line(
    shards: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = train_args(shards, tmp_path, "run")
    argv[argv.index("--workers") + 1] = "3"
    assert run_in_process(argv) == 1  # upstream: AssertionError, with its traceback
    last = capsys.readouterr().err.splitlines()[-1]
    assert last.startswith("training.main: error: --train-data has 2 shard(s) for 3 loader")


def test_every_shard_reaches_the_grouping_whole(tmp_path: Path) -> None:
    pattern = write_caption_shards(tmp_path, num_shards=3, samples_per_shard=4)
    samples = list(read_samples(shard_list(pattern), handler=raise_error))
    assert [s["__key__"] for s in samples] == [f"{i:08d}" for i in range(12)]
    assert all({"png", "txt"} <= set(s) for s in samples)


def test_the_cause_webdataset_1_marks_shard_ends_open_clip_train_does_not_expect(
    tmp_path: Path,
) -> None:
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


def test_passes_repeat_after_an_empty_one() -> None:
    """webdataset 1.x stops repeating after an empty pass (a hang under DDP); 0.2.x does not."""
    passes = []

    def one_pass():
        passes.append(len(passes))
        return iter([] if len(passes) == 1 else ["a", "b"])  # the first pass yields nothing

    assert list(RepeatedPipeline(one_pass).with_epoch(3)) == ["a", "b", "a"]
    assert passes == [0, 1, 2]


def test_sample_order_follows_the_seed_and_epoch(shards: str) -> None:
    first, counts = one_pass(shards)
    assert one_pass(shards)[0] == first and len(first) == 64 and not any(counts.values())
    assert one_pass(shards, epoch=1)[0] != first
    assert sorted(one_pass(shards, epoch=1)[0]) == sorted(first)


def test_each_pass_of_an_epoch_has_an_order_of_its_own(tmp_path: Path, transforms: tuple) -> None:
    """An epoch longer than the data repeats passes over it; each is shuffled anew (as
    upstream's unseeded shuffle is), and the whole epoch still follows the seed."""
    pattern = write_caption_shards(tmp_path, num_shards=1, samples_per_shard=6)
    epochs = []
    for _ in range(2):
        args = data_args(pattern, train_num_samples=18, batch_size=2)
        data = WebDatasetTraining().get_wds_dataset(
            args, transforms[0], is_train=True, tokenizer=transforms[1]
        )
        epochs.append([image.sum().item() for images, _ in data.dataloader for image in images])
    assert epochs[0] == epochs[1] and len(epochs[0]) == 18
    passes = [epochs[0][start : start + 6] for start in (0, 6, 12)]
    assert len({tuple(order) for order in passes}) == 3  # before: one order, three times
    assert all(sorted(order) == sorted(passes[0]) for order in passes)


def test_upstream_sample_shuffle_is_not_seeded(
    shards: str, transforms: tuple, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The cause of the seeded shuffle: webdataset seeds open_clip_train's sample shuffle from
    the process id and the clock."""
    # upstream's pipeline reading webdataset 1.x's shard ends as training.data does
    monkeypatch.setattr(
        open_clip_train.data,
        "tarfile_to_samples_nothrow",
        lambda shards: read_samples(shards, handler=raise_error),
    )
    orders = []
    for _ in range(2):
        data = open_clip_train.data.get_wds_dataset(
            data_args(shards), transforms[0], is_train=True, tokenizer=transforms[1]
        )
        dataset = data.dataloader.pipeline[0].dataset
        assert isinstance(dataset, wds.DataPipeline)
        orders.append([image.sum().item() for image, _ in dataset.iterator1()])
    assert orders[0] != orders[1] and sorted(orders[0]) == sorted(orders[1])


def train_recording_losses(argv: list[str]) -> int:
    """``training.main.main(argv[1:])``, writing every training loss (exact floats) as JSON to
    the file ``argv[0]``."""
    losses: list[float] = []
    create_loss = open_clip_train.main.create_loss

    def recording_loss(args: Namespace) -> torch.nn.Module:
        loss = create_loss(args)
        loss.register_forward_hook(
            lambda module, inputs, output: losses.append(output["contrastive_loss"].item())
        )
        return loss

    open_clip_train.main.create_loss = recording_loss
    try:
        status = run_in_process(argv[1:])
    finally:
        open_clip_train.main.create_loss = create_loss
    Path(argv[0]).write_text(json.dumps(losses))
    return status


@pytest.mark.slow  # a training run
def test_same_seed_gives_the_same_losses_for_20_steps(shards: str, tmp_path: Path) -> None:
    """One run in a fresh process, one in this one: other pid, clock and hash seed."""
    argv = train_args(shards, tmp_path, "first", epochs=1, samples=80)
    argv[argv.index("--batch-size") + 1] = "4"  # 20 steps
    first = subprocess.run(
        subprocess_command(
            "test_data", "train_recording_losses", str(tmp_path / "first.json"), *argv
        ),
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert first.returncode == 0, first.stderr[-3000:]
    argv[argv.index("--name") + 1] = "second"
    assert train_recording_losses([str(tmp_path / "second.json"), *argv]) == 0
    losses = [json.loads((tmp_path / f"{run}.json").read_text()) for run in ("first", "second")]
    assert len(losses[0]) == 20 and len(set(losses[0])) > 1
    assert losses[0] == losses[1]
