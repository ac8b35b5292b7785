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
import webdataset
from data_utils import rewrite_members, write_broken_shards, write_caption_shards
from training_utils import MODEL, checkpoint_state, epoch_losses, run_in_process, train_args

from open_clip_sparo.files import PARTIAL_SUFFIX, atomic_save
from training.checkpoints import latest_checkpoint
from training.compat import WebDatasetTraining
from training.data_faults import REASONS, SkippedSamples
from training.model_config import merged_model_config

TESTS = Path(__file__).parent
WEBDATASET_1 = int(webdataset.__version__.split(".")[0]) >= 1
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
    if WEBDATASET_1:  # its pipeline ends the epoch after one pass instead of repeating it
        assert run_in_process(argv) == 0
    else:
        with pytest.raises(RuntimeError, match="not one usable training sample in a whole pass"):
            run_in_process(argv)  # instead of looping over the shards forever
    log = (tmp_path / "unusable" / "out.log").read_text()
    assert log.count("Skipped training data (no caption) in rank 0 loader worker 0") == 16


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


def test_atomic_save_keeps_the_previous_file_when_writing_fails(tmp_path: Path) -> None:
    path = tmp_path / "epoch_1.pt"
    atomic_save({"epoch": 1}, path)
    atomic_save({"epoch": 2}, str(path))
    assert torch.load(path)["epoch"] == 2

    class Unpicklable:
        def __reduce__(self) -> tuple:
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_save({"epoch": 3, "state": Unpicklable()}, path)
    assert torch.load(path)["epoch"] == 2
    assert [p.name for p in tmp_path.iterdir()] == ["epoch_1.pt"]  # no partial file left
    buffer = io.BytesIO()
    atomic_save({"epoch": 4}, buffer)  # open files and buffers: written as torch.save writes
    assert torch.load(io.BytesIO(buffer.getvalue()))["epoch"] == 4


def test_resume_latest_skips_incomplete_checkpoints(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    for epoch in (2, 9, 10):
        torch.save({"epoch": epoch}, folder / f"epoch_{epoch}.pt")
    assert latest_checkpoint(str(folder), remote=False) == str(folder / "epoch_10.pt")
    complete = (folder / "epoch_10.pt").read_bytes()
    (folder / "epoch_10.pt").write_bytes(complete[: len(complete) // 2])  # cut-off write
    (folder / "epoch_11.pt").touch()  # created, nothing written yet
    (folder / f"epoch_12.pt{PARTIAL_SUFFIX}").write_bytes(complete)
    assert latest_checkpoint(str(folder), remote=False) == str(folder / "epoch_9.pt")
    assert f"skipping {folder / 'epoch_11.pt'}, an incomplete checkpoint" in caplog.text
    assert f"skipping {folder / 'epoch_10.pt'}, an incomplete checkpoint" in caplog.text
    assert "epoch_12" not in caplog.text
    for path in folder.glob("*.pt"):
        path.unlink()
    assert latest_checkpoint(str(folder), remote=False) is None


@pytest.mark.parametrize(
    ("model", "kwargs", "key", "allowed"),
    [
        (MODEL, {"sparo_cfg": {"num_slot": 8}}, "sparo_cfg.num_slot", "num_slots"),
        (MODEL, {"vision_cfg": {"widht": 64}}, "vision_cfg.widht", "width"),
        (MODEL, {"text_cfg": {"context_len": 16}}, "text_cfg.context_len", "context_length"),
        (MODEL, {"embed_dims": 256}, "embed_dims", "embed_dim"),
        ("ViT-Ti-8-64", {"quick_gleu": True}, "quick_gleu", "quick_gelu"),
    ],
    ids=["sparo_cfg", "vision_cfg", "text_cfg", "top-level", "plain-clip"],
)
def test_unknown_model_kwargs_fail_naming_the_key_and_the_allowed_keys(
    model: str, kwargs: dict, key: str, allowed: str
) -> None:
    with pytest.raises(ValueError, match=re.escape(repr(key))) as error:
        merged_model_config(model, kwargs).__enter__()
    assert f"'{allowed}'" in str(error.value)  # in the list of allowed keys


def test_model_kwargs_block_must_be_an_object_and_cli_stops_before_writing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with pytest.raises(ValueError, match="vision_cfg must be a JSON object"):
        merged_model_config(MODEL, {"vision_cfg": 64}).__enter__()
    argv = ["--model", MODEL, "--logs", str(tmp_path), "--model-kwargs", '{"sparo_cfg": {"x": 1}}']
    assert run_in_process(argv) == 1
    assert "'sparo_cfg.x'" in caplog.text and "'num_slots'" in caplog.text
    assert not list(tmp_path.iterdir())  # stopped before any run folder


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
