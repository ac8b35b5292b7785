"""open_clip_sparo.util.files: the atomic writer, and the one checkpoint reader."""

from __future__ import annotations

import errno
import io
import json
import re
from collections.abc import Callable
from pathlib import Path

import open_clip
import pytest
import torch
from checkpoint_utils import crafted_checkpoint

from open_clip_sparo.dino import load_checkpoint as dino_checkpoint
from open_clip_sparo.io.init_from_clip import load_clip_state_dict
from open_clip_sparo.io.loading import load_model
from open_clip_sparo.util.errors import run_entry_point
from open_clip_sparo.util.files import atomic_save, load_torch_file, read_state_dict


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


def _read_resume(path: Path) -> object:
    from training.checkpoints import read_resume_checkpoint

    return read_resume_checkpoint(str(path), map_location="cpu")


def _read_pretrained(path: Path) -> object:
    from training.checkpoints import read_pretrained

    return read_pretrained(str(path))


def _convert_fork(path: Path) -> object:
    from fork_utils import fork_config

    from open_clip_sparo.fork.conversion import convert_fork

    config = path.parent / "fork.json"
    config.write_text(json.dumps(fork_config()))
    return convert_fork(config, path, path.parent / "converted")


def _load_run(path: Path) -> object:
    from benchmark_data import TINY_MODEL, write_run_folder

    from open_clip_sparo.io.loading import load_model

    run = write_run_folder(path.parent / "run", open_clip.create_model(TINY_MODEL), [1])
    path.replace(run / "checkpoints" / "epoch_1.pt")
    return load_model(str(run))


# every way a checkpoint is read: training (--resume, --pretrained), OpenCLIP's factory
# (pretrained=), load_model (sparo eval/select/export), init-from-clip, convert-fork, DINO,
# the evaluation cache, and the reader itself
READERS: dict[str, Callable[[Path], object]] = {
    "resume": _read_resume,
    "pretrained": _read_pretrained,
    "create_model": lambda p: open_clip.create_model("sparo-ViT-Ti-8-64", pretrained=str(p)),
    "load_model": lambda p: load_model("sparo-ViT-Ti-8-64", str(p)),
    "run_folder": _load_run,
    "init_from_clip": load_clip_state_dict,
    "convert_fork": _convert_fork,
    "dino": dino_checkpoint,
    "load_torch_file": load_torch_file,
    "read_state_dict": read_state_dict,
}


@pytest.mark.parametrize("reader", sorted(READERS))
def test_no_checkpoint_runs_code_even_when_pytorch_is_told_to_allow_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, reader: str
) -> None:
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")  # torch.load's default: unsafe
    path, marker = crafted_checkpoint(tmp_path)
    with pytest.raises(ValueError, match="is not a checkpoint of tensors") as error:
        READERS[reader](path)
    assert not marker.exists(), f"{reader} ran the checkpoint's code"
    assert path.name in str(error.value) and "weights_only" not in str(error.value)


class FullDisk(io.FileIO):
    """A file on a disk that fills up after ``room`` bytes."""

    room = 1000

    def write(self, data: bytes) -> int:
        if self.tell() + len(data) > self.room:
            raise OSError(errno.ENOSPC, "No space left on device")
        return super().write(data)


def test_a_full_disk_ends_in_one_line_naming_the_folder_and_the_space_needed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "epoch_1.pt"
    atomic_save({"epoch": 1}, path)
    save = torch.serialization.save
    # torch.save writes to a file whose disk is full: PyTorch raises its own RuntimeError
    # ("enforce fail at inline_container.cc") from the writer's OSError
    monkeypatch.setattr(
        torch.serialization,
        "save",
        lambda obj, file, *a, **k: save(obj, FullDisk(file.fileno(), "wb", closefd=False), *a, **k),
    )
    state = {"epoch": 2, "state_dict": {"w": torch.zeros(2**18)}}  # 1 MB of tensors

    def main(argv: None) -> int:
        atomic_save(state, path)
        return 0

    assert run_entry_point("training.main", main, None) == 1
    error = capsys.readouterr().err
    assert re.fullmatch(
        re.escape(
            f"training.main: error: no space left to write epoch_1.pt in {tmp_path}: it needs "
            "about 1.0 MB and "
        )
        + r"[0-9.]+ MB"
        + re.escape(
            " are free there; free some space or write to another folder (nothing was "
            f"replaced: {path} is as it was)\n"
        ),
        error,
    )
    assert torch.load(path, weights_only=True) == {"epoch": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["epoch_1.pt"]
