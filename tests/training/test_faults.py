"""training.main under faults: broken data, a kill while saving, bad --model-kwargs, and
reproducible losses (issue 7, training side)."""

from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
import sys
import time
from argparse import Namespace
from collections import Counter
from pathlib import Path

import open_clip
import open_clip_train.data
import open_clip_train.main
import pytest
import torch
from data_utils import rewrite_members, write_broken_shards, write_caption_shards
from training_utils import (
    MODEL,
    checkpoint_state,
    epoch_losses,
    run_in_process,
    run_torchrun,
    train_args,
)

from open_clip_sparo.util.files import PARTIAL_SUFFIX
from training.checkpoints import read_pretrained, read_resume_checkpoint
from training.compat import WebDatasetTraining
from training.data_faults import REASONS, SkippedSamples
from training.model_config import merged_model_config

TESTS = Path(__file__).parent
STALLED_SAVE = "epoch_2"  # train_with_stalled_save hangs halfway through writing this checkpoint


def subprocess_command(function: str, *args: str) -> list[str]:
    """Run ``function(list_of_args)`` of this module in a fresh Python process."""
    code = (
        f"import sys; sys.path[:0] = [{str(TESTS)!r}, {str(TESTS.parent)!r}]; "
        "import test_faults as t; "
        f"sys.exit(t.{function}(sys.argv[1:]))"
    )
    return [sys.executable, "-c", code, *args]


def train_with_stalled_save(argv: list[str]) -> int:
    """``training.main.main(argv)``, whose save of ``epoch_2.pt`` writes half the bytes, flushes
    them and hangs: a process killed there dies in the middle of writing a checkpoint."""
    from training.main import main

    save = torch.serialization.save

    def stalled_save(obj: object, f: object, *args: object, **kwargs: object) -> None:
        path = f if isinstance(f, (str, os.PathLike)) else getattr(f, "name", "")
        if STALLED_SAVE not in str(path):
            return save(obj, f, *args, **kwargs)
        buffer = io.BytesIO()
        save(obj, buffer, *args, **kwargs)
        with open(path, "ab") as file:  # the file torch.save was writing
            file.write(buffer.getvalue()[: buffer.tell() // 2])
        time.sleep(300)

    torch.serialization.save = stalled_save
    return main(argv)


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


def data_args(shards: str, **overrides: object) -> Namespace:
    """The arguments open_clip_train's ``get_wds_dataset`` reads for training data."""
    args = dict(
        train_data=shards, train_num_samples=32, dataset_resampled=False, seed=0, rank=0,
        world_size=1, workers=0, batch_size=1, train_data_upsampling_factors=None,
    )  # fmt: skip
    return Namespace(**{**args, **overrides})


def one_pass(shards: str, epoch: int = 0) -> tuple[list[float], dict[str, int]]:
    """One pass over ``shards`` through the training pipeline (without augmentation): the image
    sums of the samples in order, and the skips counted."""
    _, _, preprocess = open_clip.create_model_and_transforms(MODEL)
    training = WebDatasetTraining()
    data = training.get_wds_dataset(
        data_args(shards), preprocess, is_train=True, tokenizer=open_clip.get_tokenizer(MODEL)
    )
    data.set_epoch(epoch)
    dataset = data.dataloader.pipeline[0].dataset
    order = [image.sum().item() for image, _ in dataset.iterator1()]  # batches of one
    return order, training.skipped.take_counts()


@pytest.fixture(scope="module")
def shards(tmp_path_factory: pytest.TempPathFactory) -> str:
    return write_caption_shards(tmp_path_factory.mktemp("shards"), num_shards=2)


@pytest.fixture(scope="module")
def broken_shards(tmp_path_factory: pytest.TempPathFactory) -> str:
    return write_broken_shards(tmp_path_factory.mktemp("broken"), samples_per_shard=16)


def test_broken_data_is_skipped_and_counted_per_reason(
    broken_shards: str, caplog: pytest.LogCaptureFixture
) -> None:
    order, counts = one_pass(broken_shards)
    assert len(order) == 16 - 3 + 4  # see write_broken_shards
    assert counts == {"no caption": 1, "no image": 1, "does not decode": 1, "unreadable shard": 1}
    first, second = sorted(Path(broken_shards).parent.glob("shard-*.tar"))
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


def test_data_without_a_usable_sample_stops_the_run_with_the_fix(tmp_path: Path) -> None:
    pattern = write_caption_shards(tmp_path / "shards", num_shards=2, samples_per_shard=8)
    for shard in (tmp_path / "shards").glob("*.tar"):  # captions under another extension
        rewrite_members(shard, lambda name, content: (name.replace(".txt", ".caption"), content))
    argv = train_args(pattern, tmp_path, "unusable", samples=16)
    # webdataset 0.2.x and 1.x alike (training.shards.RepeatedPipeline repeats an empty pass)
    with pytest.raises(RuntimeError, match="not one usable training sample in a whole pass"):
        run_in_process(argv)  # instead of looping over the shards forever
    log = (tmp_path / "unusable" / "out.log").read_text()
    assert log.count("Skipped training data (no caption) in rank 0 loader worker 0") == 16


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


@pytest.mark.slow
def test_non_finite_loss_stops_the_run_and_keeps_the_last_good_checkpoint(
    shards: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # the reported case: exp(100) overflows, the loss is NaN from the first step
    argv = [*train_args(shards, tmp_path, "nan"), "--model-kwargs", '{"init_logit_scale": 100}']
    assert run_in_process(argv) == 1  # before: 0, and an epoch_1.pt of NaN tensors
    error = capsys.readouterr().err.splitlines()[-1]
    assert error.startswith("training.main: error: the training loss is nan at step 0 (epoch 0")
    assert "no checkpoint was written yet" in error and "init_logit_scale" in error
    assert "--lr" in error and "--precision" in error
    assert not list((tmp_path / "nan" / "checkpoints").iterdir())
    assert "the training loss is nan" in (tmp_path / "nan" / "out.log").read_text()

    # a good epoch, then a learning rate that breaks the weights in the next one
    argv = train_args(shards, tmp_path, "later", epochs=1)
    assert run_in_process(argv) == 0
    argv[argv.index("--epochs") + 1] = "2"
    argv[argv.index("--lr") + 1] = "1e30"
    assert run_in_process([*argv, "--resume", "latest"]) == 1
    error = capsys.readouterr().err.splitlines()[-1]
    kept = tmp_path / "later" / "checkpoints" / "epoch_1.pt"
    assert "(epoch 1, batch 2 of 4)" in error and f"the last good checkpoint is {kept}" in error
    assert not (kept.parent / "epoch_2.pt").exists()
    assert all(torch.isfinite(v).all() for v in checkpoint_state(kept).values())


@pytest.mark.parametrize(
    "extra, message",
    [
        (
            ["--model", "sparo-ViT-Ti-8-6"],
            "no model config 'ViT-Ti-8-6' to derive it from; sparo-<name> exists for every "
            "OpenCLIP transformer config (open_clip.list_models()). Did you mean "
            "'sparo-ViT-Ti-8-64'",
        ),
        (["--max-params", "100"], "more than --max-params 100"),
        (
            ["--model-kwargs", '{"sparo_cfg": {"num_slots": 7}}'],
            "cannot be built with these sizes: embed_dim=256 must equal",
        ),
        (
            ["--model-kwargs", '{"vision_cfg": {"width": 100}}'],
            "cannot be built with these sizes: embed_dim must be divisible by num_heads",
        ),
    ],
    ids=["model-typo", "max-params", "slot-sizes", "width"],
)
def test_a_failed_start_leaves_no_run_folder_and_the_fixed_rerun_runs(
    shards: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    argv = train_args(shards, tmp_path, "run")
    argv[argv.index("--epochs") + 1] = "0"  # the rerun only starts
    assert run_in_process([*argv, *extra]) == 1
    assert message in capsys.readouterr().err.splitlines()[-1]
    assert not (tmp_path / "run").exists()
    assert run_in_process(argv) == 0  # before: 255, "Experiment already exists"
    assert (tmp_path / "run" / "out.log").is_file()


def test_a_failed_start_in_an_existing_run_folder_keeps_it(shards: str, tmp_path: Path) -> None:
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "notes.txt").write_text("mine")
    argv = [*train_args(shards, tmp_path, "run"), "--max-params", "100"]
    assert run_in_process(argv) == 1
    assert (tmp_path / "run" / "notes.txt").read_text() == "mine"


def _unreadable_checkpoints(folder: Path) -> dict[str, Path]:
    good = folder / "good.pt"
    torch.save({"epoch": 1, "x": torch.zeros(2)}, good)

    files = {"random": os.urandom(1000), "empty": b"", "truncated": good.read_bytes()[:200]}
    paths = {name: folder / f"{name}.pt" for name in files}
    for name, content in files.items():
        paths[name].write_bytes(content)
    paths["object"] = folder / "object.pt"
    torch.save({"state_dict": Namespace(a=1)}, paths["object"])  # loading it would run code
    paths["folder"] = folder
    paths["foreign"] = good  # an epoch without a state dict and optimizer
    return paths


UNREADABLE = {
    "random": "is not a checkpoint of tensors",
    "empty": "is empty (0 bytes)",
    "truncated": "cannot be read, it is cut short or corrupt",
    "object": "is not a checkpoint of tensors",
    "folder": "is a folder, not a file",
    "foreign": "is not a checkpoint of open_clip_train",
}


@pytest.mark.parametrize("kind", sorted(UNREADABLE))
def test_unreadable_resume_checkpoints_are_named_errors(tmp_path: Path, kind: str) -> None:
    path = _unreadable_checkpoints(tmp_path)[kind]
    with pytest.raises((ValueError, IsADirectoryError), match=re.escape(UNREADABLE[kind])) as error:
        read_resume_checkpoint(str(path))
    assert str(path) in str(error.value) and "weights_only" not in str(error.value)


@pytest.mark.parametrize("kind", ["random", "empty", "truncated", "object", "folder"])
def test_unreadable_pretrained_checkpoints_are_named_errors(tmp_path: Path, kind: str) -> None:
    path = _unreadable_checkpoints(tmp_path)[kind]
    with pytest.raises((ValueError, IsADirectoryError), match=re.escape(UNREADABLE[kind])) as error:
        read_pretrained(str(path))
    assert str(path) in str(error.value) and "weights_only" not in str(error.value)


@pytest.mark.parametrize("flag", ["--resume", "--pretrained"])
def test_a_random_checkpoint_ends_the_run_with_one_line(
    shards: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], flag: str
) -> None:
    path = _unreadable_checkpoints(tmp_path)["random"]
    argv = [*train_args(shards, tmp_path, "run"), flag, str(path)]
    assert run_in_process(argv) == 1  # before: PyTorch's traceback advising weights_only=False
    error = capsys.readouterr().err.splitlines()[-1]
    assert error.startswith(f"training.main: error: {flag} checkpoint {path} is not a checkpoint")
    assert "weights_only" not in error and "Traceback" not in error


def test_sample_order_follows_the_seed_and_epoch(shards: str) -> None:
    first, counts = one_pass(shards)
    assert one_pass(shards)[0] == first and len(first) == 64 and not any(counts.values())
    assert one_pass(shards, epoch=1)[0] != first
    assert sorted(one_pass(shards, epoch=1)[0]) == sorted(first)


def test_upstream_sample_shuffle_is_not_seeded(shards: str) -> None:
    """The cause sample_order fixes: webdataset seeds the sample shuffle from pid and clock."""
    _, _, preprocess = open_clip.create_model_and_transforms(MODEL)
    tokenizer = open_clip.get_tokenizer(MODEL)
    orders = []
    for _ in range(2):
        # upstream's pipeline, read as data_faults reads it (webdataset 1.x's shard ends)
        with SkippedSamples().counting(rank=0):
            data = open_clip_train.data.get_wds_dataset(
                data_args(shards), preprocess, is_train=True, tokenizer=tokenizer
            )
        dataset = data.dataloader.pipeline[0].dataset
        orders.append([image.sum().item() for image, _ in dataset.iterator1()])
    assert orders[0] != orders[1] and sorted(orders[0]) == sorted(orders[1])


@pytest.mark.slow  # a training process killed, then resumed
def test_kill_while_saving_then_resume_latest(shards: str, tmp_path: Path) -> None:
    argv = [*train_args(shards, tmp_path, "killed", epochs=2), "--save-frequency", "1"]
    checkpoints = tmp_path / "killed" / "checkpoints"
    process = subprocess.Popen(
        subprocess_command("train_with_stalled_save", *argv),
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 240
        while not any(p.stat().st_size for p in checkpoints.glob(f"{STALLED_SAVE}*")):
            assert process.poll() is None, process.stderr.read().decode()[-3000:]
            assert time.monotonic() < deadline, "the run never reached its second save"
            time.sleep(0.2)
        process.send_signal(signal.SIGKILL)  # halfway through writing epoch_2.pt
    finally:
        process.kill()
        process.wait()
        process.stderr.close()
    assert process.returncode == -signal.SIGKILL
    # upstream's torch.save would have left a truncated epoch_2.pt here
    names = sorted(p.name for p in checkpoints.iterdir())
    assert names == ["epoch_1.pt", f"{STALLED_SAVE}.pt{PARTIAL_SUFFIX}"]
    epoch_1 = checkpoint_state(checkpoints / "epoch_1.pt")

    argv[argv.index("--epochs") + 1] = "3"
    assert run_in_process([*argv, "--resume", "latest"]) == 0
    log = (tmp_path / "killed" / "out.log").read_text()
    assert re.search(r"resuming checkpoint '.*epoch_1\.pt' \(epoch 1\)", log)
    assert log.count("Start epoch 0") == 1 and log.count("Start epoch 1") == 2
    assert sorted(epoch_losses(tmp_path / "killed" / "out.log")) == [0, 1, 2]
    # the new save of epoch_2.pt wrote over the partial file
    names = sorted(p.name for p in checkpoints.iterdir())
    assert names == ["epoch_1.pt", "epoch_2.pt", "epoch_3.pt"]
    epoch_2 = torch.load(checkpoints / "epoch_2.pt", weights_only=True)
    assert epoch_2["epoch"] == 2 and epoch_2["state_dict"].keys() == epoch_1.keys()


def test_model_kwargs_block_must_be_an_object_and_cli_stops_before_writing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(ValueError, match="vision_cfg must be a JSON object"):
        merged_model_config(MODEL, {"vision_cfg": 64}).__enter__()
    argv = ["--model", MODEL, "--logs", str(tmp_path), "--model-kwargs", '{"sparo_cfg": {"x": 1}}']
    assert run_in_process(argv) == 1
    error = capsys.readouterr().err.splitlines()[-1]
    assert error.startswith("training.main: error: --model-kwargs: unknown key 'sparo_cfg.x'")
    assert "'num_slots'" in error
    assert not list(tmp_path.iterdir())  # stopped before any run folder


@pytest.mark.slow  # a training run
def test_same_seed_gives_the_same_losses_for_20_steps(shards: str, tmp_path: Path) -> None:
    """One run in a fresh process, one in this one: other pid, clock and hash seed."""
    argv = train_args(shards, tmp_path, "first", epochs=1, samples=80)
    argv[argv.index("--batch-size") + 1] = "4"  # 20 steps
    first = subprocess.run(
        subprocess_command("train_recording_losses", str(tmp_path / "first.json"), *argv),
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
