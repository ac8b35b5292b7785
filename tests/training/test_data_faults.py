"""training.data_faults: broken training data skipped, counted per reason and reported, and
data without a usable sample stopping the run."""

from __future__ import annotations

import re
import signal
import tarfile
from collections import Counter
from pathlib import Path

import open_clip
import open_clip_train.data
import pytest
from data_utils import (
    rewrite_members,
    shard_paths,
    spoil_all_but_the_first_sample,
    write_broken_shards,
    write_caption_shards,
)
from training_utils import (
    MODEL,
    data_args,
    epoch_losses,
    one_pass,
    run_in_process,
    run_torchrun,
    train_args,
)

from open_clip_sparo.util import endless_stream
from open_clip_sparo.util.errors import UnusableDataError
from training.data import WebDatasetTraining
from training.data_faults import REASONS


@pytest.fixture(scope="module")
def broken_shards(tmp_path_factory: pytest.TempPathFactory) -> str:
    return write_broken_shards(tmp_path_factory.mktemp("broken"), samples_per_shard=16)


def test_broken_data_is_skipped_and_counted_per_reason(
    broken_shards: str, caplog: pytest.LogCaptureFixture
) -> None:
    order, counts = one_pass(broken_shards)
    assert len(order) == 16 - 3 + 4  # see write_broken_shards
    assert counts == {"no caption": 1, "no image": 1, "does not decode": 1, "unreadable shard": 1}
    first, second = sorted(Path(broken_shards).parent.glob("*.tar"))
    for reason, sample in (("no caption", 1), ("no image", 2), ("does not decode", 3)):
        where = f"({reason}) in rank 0 main process: sample '{sample:08d}' of {first}"
        assert where in caplog.text
    # webdataset 1.x wraps the decoder's error in its own DecodingError
    assert re.search(r"UnidentifiedImageError|DecodingError", caplog.text)
    assert f"(unreadable shard) in rank 0 main process: {second}, skipping" in caplog.text
    assert caplog.text.count("(unreadable shard)") == 1  # the truncation raised twice


@pytest.mark.slow  # a training run
def test_training_on_broken_data_completes_and_logs_the_counts(
    broken_shards: str, tmp_path: Path
) -> None:
    argv = train_args(broken_shards, tmp_path, "broken", epochs=2, samples=24)
    argv[argv.index("--batch-size") + 1] = "4"  # 6 steps a epoch: more than one pass of the data
    assert run_in_process(argv) == 0  # with one loader worker process
    run = tmp_path / "broken"
    assert (run / "checkpoints" / "epoch_2.pt").is_file()
    assert [len(losses) for losses in epoch_losses(run / "out.log").values()] == [6, 6]
    log = (run / "out.log").read_text()
    for epoch in (0, 1):
        summary = re.search(rf"Skipped training data in epoch {epoch}: (.*) \(a warning", log)
        assert summary, log[-3000:]
        counts = {r: int(n) for r, n in re.findall(r"(\w[\w ]*): (\d+)", summary.group(1))}
        assert set(counts) == set(REASONS) and all(n >= 1 for n in counts.values())
        # the workers' own warnings reach out.log too: one per skip
        epoch_log = log.split(f"Start epoch {epoch}")[1].split("Skipped training data in")[0]
        warned = Counter(
            re.findall(r"Skipped training data \(([a-z ]+)\) in rank 0 loader worker 0", epoch_log)
        )
        assert warned == counts


def captionless_shards(directory: Path) -> str:
    """Two shards of 8 samples with their captions under another extension: none usable."""
    pattern = write_caption_shards(directory, num_shards=2, samples_per_shard=8)
    for shard in directory.glob("*.tar"):
        rewrite_members(shard, lambda name, content: (name.replace(".txt", ".caption"), content))
    return pattern


def test_data_without_a_usable_sample_stops_the_run_with_the_fix(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    argv = train_args(captionless_shards(tmp_path / "shards"), tmp_path, "unusable", samples=16)
    # webdataset 0.2.x and 1.x alike (training.data.RepeatedPipeline repeats an empty pass)
    assert run_in_process(argv) == 1  # instead of looping over the shards forever
    # one line, though it was raised in the loader worker (before: the worker's traceback)
    message = "training.main: error: not one usable training sample in a whole pass"
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith(message)
    log = (tmp_path / "unusable" / "out.log").read_text()
    assert log.count("Skipped training data (no caption) in rank 0 loader worker 0") == 16
    assert message in log and "Traceback" not in log


def test_resampled_data_without_a_usable_sample_stops_after_a_thousand_in_a_row(
    tmp_path: Path,
) -> None:
    """A resampled run reads one pass that never ends: it stops, past the shuffle buffer."""
    with pytest.raises(UnusableDataError) as error:
        first_batch(captionless_shards(tmp_path), dataset_resampled=True)
    assert re.fullmatch(
        r"not one usable training sample in 1,000 in a row, drawn with --dataset-resampled by "
        r"rank 0 main process \(the last from .*\.tar\); the warnings above say why each sample "
        r"was skipped\. .*; check --train-data\.",
        str(error.value),
    )


def test_resampled_data_stops_when_the_shards_it_draws_have_no_usable_sample(
    tmp_path: Path,
) -> None:
    """Upsampling factor 0 leaves a source's shards undrawn: before, the run waited for unusable
    samples from them too, and read the other source's forever."""
    usable = write_caption_shards(tmp_path / "usable", num_shards=1, samples_per_shard=4)
    pattern = f"{usable}::{captionless_shards(tmp_path / 'unusable')}"
    with pytest.raises(UnusableDataError, match=r"not one usable training sample in 1,000"):
        first_batch(pattern, dataset_resampled=True, train_data_upsampling_factors="0::1")


def test_resampled_shards_that_give_no_sample_stop_the_run(tmp_path: Path) -> None:
    pattern = write_caption_shards(tmp_path, num_shards=2, samples_per_shard=4)
    for shard in tmp_path.glob("*.tar"):
        shard.write_bytes(b"not a tar file" * 100)
    with pytest.raises(
        UnusableDataError,
        match=r"not one sample in 100 shards in a row, drawn with --dataset-resampled by rank 0 "
        r"main process \(the last .*\.tar\); the warnings above say why",
    ):
        first_batch(pattern, dataset_resampled=True)


def test_resampled_empty_shards_stop_the_run_saying_they_hold_no_sample(tmp_path: Path) -> None:
    for index in range(2):
        tarfile.open(tmp_path / f"{index:06d}.tar", "w").close()  # readable: no warning
    with pytest.raises(
        UnusableDataError,
        match=r"not one sample in 100 shards in a row, .*; the warnings above say why each could "
        r"not be read, and a shard without one holds no sample; check --train-data\.",
    ):
        first_batch(str(tmp_path / "{000000..000001}.tar"), dataset_resampled=True)


def test_resampled_data_with_rare_usable_samples_trains(tmp_path: Path) -> None:
    """One usable sample in 16: a batch of 400 reads ~7,400 samples, past where the run would
    stop if unusable samples after a usable one counted."""
    pattern = write_caption_shards(tmp_path, num_shards=2, samples_per_shard=8)
    spoil_all_but_the_first_sample(tmp_path, lambda name, content: (name + "-not", content))
    images, texts = first_batch(pattern, dataset_resampled=True, batch_size=400)
    assert images.shape[0] == texts.shape[0] == 400


def test_one_unreadable_shard_among_two_workers_shards_is_skipped(tmp_path: Path) -> None:
    pattern = write_caption_shards(tmp_path / "shards", num_shards=2, samples_per_shard=16)
    broken = sorted((tmp_path / "shards").glob("*.tar"))[1]
    broken.write_bytes(b"not a tar file" * 100)  # the whole share of one loader worker
    argv = train_args(pattern, tmp_path, "two-workers", samples=16)
    argv[argv.index("--workers") + 1] = "2"
    assert run_in_process(argv) == 0  # before: "not one usable training sample in a whole pass"
    log = (tmp_path / "two-workers" / "out.log").read_text()
    assert "(unreadable shard) in rank 0 loader worker" in log and str(broken) in log
    assert "not one usable training sample in its share of the shards" in log
    assert "it reads all 2 shards of the run instead" in log
    assert (tmp_path / "two-workers" / "checkpoints" / "epoch_1.pt").is_file()


@pytest.mark.slow
def test_one_unreadable_shard_among_two_ranks_shards_is_skipped(tmp_path: Path) -> None:
    pattern = write_caption_shards(tmp_path / "shards", num_shards=2, samples_per_shard=16)
    sorted((tmp_path / "shards").glob("*.tar"))[1].write_bytes(b"not a tar file" * 100)
    done = run_torchrun(train_args(pattern, tmp_path, "two-ranks", samples=32))
    assert done.returncode == 0, done.stderr[-3000:]
    assert "it reads all 2 shards of the run instead" in done.stderr  # rank 1's warning
    assert (tmp_path / "two-ranks" / "checkpoints" / "epoch_1.pt").is_file()


def first_batch(shards: str, **overrides: object) -> tuple:
    """The first batch of the training data of ``shards`` (no loader workers), or a failed test
    after 60 s: passes that never fill a batch would repeat forever. (The failure is pytest's,
    not an ``Exception``, which the pipeline's skip handlers would count and swallow.)"""
    _, _, preprocess = open_clip.create_model_and_transforms(MODEL)
    data = WebDatasetTraining().get_wds_dataset(
        data_args(shards, **overrides),
        preprocess,
        is_train=True,
        tokenizer=open_clip.get_tokenizer(MODEL),
    )

    def give_up(signum: int, frame: object) -> None:
        pytest.fail("no batch after 60 s")

    previous = signal.signal(signal.SIGALRM, give_up)
    signal.alarm(60)
    try:
        return next(iter(data.dataloader))
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def test_data_with_fewer_usable_samples_than_one_batch_stops_with_the_fix(
    tmp_path: Path,
) -> None:
    pattern = write_caption_shards(tmp_path, num_shards=1, samples_per_shard=3)
    # before: every pass read 3 samples and dropped them as a partial batch, forever
    with pytest.raises(
        UnusableDataError,
        match=r"only 3 usable training sample\(s\) in a whole pass over the run's 1 shard\(s\) "
        r".*fewer than one batch of --batch-size 8.*lower --batch-size to at most 3",
    ):
        first_batch(pattern, batch_size=8, train_num_samples=4)


def test_resampled_data_with_fewer_usable_samples_than_one_batch_fills_batches(
    tmp_path: Path,
) -> None:
    pattern = write_caption_shards(tmp_path, num_shards=1, samples_per_shard=3)
    images, texts = first_batch(pattern, batch_size=8, dataset_resampled=True)
    assert len(images) == len(texts) == 8  # the 3 samples drawn again: no stop, as documented


def test_a_share_of_the_shards_smaller_than_one_batch_reads_all_shards(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    pattern = write_caption_shards(tmp_path, num_shards=2, samples_per_shard=4)
    monkeypatch.setenv("RANK", "0")  # rank 0 of 2 (webdataset's split_by_node reads these)
    monkeypatch.setenv("WORLD_SIZE", "2")
    images, texts = first_batch(pattern, batch_size=6, world_size=2)
    assert len(images) == len(texts) == 6
    assert "4 usable training sample(s), fewer than one batch of --batch-size 6," in caplog.text
    assert "it reads all 2 shards of the run instead" in caplog.text


@pytest.mark.parametrize("unusable_shard", [0, 1])
def test_resampled_data_with_one_unusable_shard_trains(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, unusable_shard: int
) -> None:
    """A shard of more unusable samples in a row than the shuffle buffer and the stop's count
    (here scaled down: 20 and 10 against 64 samples a shard), drawn first, when the buffer is
    empty: before, the run stopped though the other shard is usable."""
    monkeypatch.setattr(open_clip_train.data, "_SAMPLE_SHUFFLE_SIZE", 20)
    monkeypatch.setattr(open_clip_train.data, "_SAMPLE_SHUFFLE_INITIAL", 10)
    monkeypatch.setattr(endless_stream, "UNUSABLE_IN_A_ROW", 10)
    pattern = write_caption_shards(tmp_path, num_shards=2, samples_per_shard=64)
    rewrite_members(
        shard_paths(tmp_path)[unusable_shard],
        lambda name, content: (name.replace(".txt", ".caption"), content),
    )
    images, texts = first_batch(pattern, dataset_resampled=True, batch_size=8)
    assert images.shape[0] == texts.shape[0] == 8
