"""training.checkpoints: the newest complete checkpoint of a run, unreadable checkpoints named,
and a kill while saving that leaves the last checkpoint to resume from."""

from __future__ import annotations

import io
import os
import re
import signal
import subprocess
import time
from argparse import Namespace
from pathlib import Path

import pytest
import torch
from training_utils import (
    checkpoint_state,
    epoch_losses,
    run_in_process,
    subprocess_command,
    train_args,
)

from open_clip_sparo.util.files import PARTIAL_SUFFIX
from training.checkpoints import latest_checkpoint, read_pretrained, read_resume_checkpoint


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


STALLED_SAVE = "epoch_2"  # train_with_stalled_save hangs halfway through writing this checkpoint


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


@pytest.mark.slow  # a training process killed, then resumed
def test_kill_while_saving_then_resume_latest(shards: str, tmp_path: Path) -> None:
    argv = [*train_args(shards, tmp_path, "killed", epochs=2), "--save-frequency", "1"]
    checkpoints = tmp_path / "killed" / "checkpoints"
    process = subprocess.Popen(
        subprocess_command("test_checkpoints", "train_with_stalled_save", *argv),
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
