"""open_clip_sparo.util.files: the atomic writer, and the one checkpoint reader."""

from __future__ import annotations

import errno
import io
import json
import os
import re
from collections.abc import Callable
from pathlib import Path

import open_clip
import pytest
import torch
from checkpoint_utils import crafted_checkpoint
from hypothesis import given, settings
from hypothesis import strategies as st

from open_clip_sparo.dino import load_checkpoint as dino_checkpoint
from open_clip_sparo.io.init_from_clip import load_clip_state_dict
from open_clip_sparo.io.loading import load_model
from open_clip_sparo.util.errors import run_entry_point
from open_clip_sparo.util.files import (
    UnreadableFileError,
    atomic_save,
    is_torchscript_archive,
    load_torch_file,
    read_state_dict,
)


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
# (pretrained=), OpenCLIP's loader of OpenAI's weights, load_model (sparo eval/select/export),
# init-from-clip, convert-fork, DINO, the evaluation cache, and the reader itself
READERS: dict[str, Callable[[Path], object]] = {
    "resume": _read_resume,
    "pretrained": _read_pretrained,
    "create_model": lambda p: open_clip.create_model("sparo-ViT-Ti-8-64", pretrained=str(p)),
    "load_openai_model": lambda p: open_clip.load_openai_model(str(p), device="cpu"),
    "load_model": lambda p: load_model("sparo-ViT-Ti-8-64", str(p)),
    "run_folder": _load_run,
    "init_from_clip": load_clip_state_dict,
    "convert_fork": _convert_fork,
    "dino": dino_checkpoint,
    "load_torch_file": load_torch_file,
    "read_state_dict": read_state_dict,
}


@settings(max_examples=300, deadline=None)
@given(
    prefix=st.sampled_from([b"", b"\x80\x02", b"\x80\x04", b"PK\x03\x04"]),  # pickle, zip
    garbage=st.binary(min_size=1, max_size=200),
)
def test_any_garbage_is_one_unreadable_file_error(prefix: bytes, garbage: bytes) -> None:
    """Whatever the bytes, the reader raises its one error (PyTorch's unpickler fails on garbage
    with a dozen exception types: UnicodeDecodeError, struct.error, IndexError, ...)."""
    with pytest.raises(UnreadableFileError, match=r"garbage\.pt"):
        load_torch_file("garbage.pt", stream=io.BytesIO(prefix + garbage))


@pytest.mark.parametrize("posing_as_torchscript", [False, True], ids=["torch.save", "posing"])
@pytest.mark.parametrize("reader", sorted(READERS))
def test_no_checkpoint_runs_code_even_when_pytorch_is_told_to_allow_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, reader: str, posing_as_torchscript: bool
) -> None:
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")  # torch.load's default: unsafe
    path, marker = crafted_checkpoint(tmp_path, posing_as_torchscript=posing_as_torchscript)
    with pytest.raises(ValueError, match="is not a checkpoint of tensors") as error:
        READERS[reader](path)
    assert not marker.exists(), f"{reader} ran the checkpoint's code"
    assert path.name in str(error.value) and "weights_only" not in str(error.value)


def test_no_openai_tag_runs_code_even_when_pytorch_is_told_to_allow_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``pretrained="openai"`` reads the hub's file through the factory's (hooked) loader, never
    through OpenCLIP's ``load_openai_model``."""
    from hub_utils import use_hub_cache, write_hub_file

    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    path, marker = crafted_checkpoint(tmp_path)
    hub_id = open_clip.get_pretrained_cfg("ViT-B-32", "openai")["hf_hub"].strip("/")
    use_hub_cache(monkeypatch, tmp_path / "hub")
    cached = write_hub_file(
        tmp_path / "hub",
        hub_id,
        "open_clip_pytorch_model.bin",
        lambda file: file.write(path.read_bytes()),
    )
    with pytest.raises(ValueError, match="is not a checkpoint of tensors") as error:
        open_clip.create_model("ViT-B-32", pretrained="openai")
    assert not marker.exists(), "pretrained='openai' ran the checkpoint's code"
    assert str(cached) in str(error.value) and "\n" not in str(error.value)


def test_load_openai_model_builds_a_state_dict_as_openclip_does(tmp_path: Path) -> None:
    """A state dict in OpenAI's layout passes the check and loads as OpenCLIP's own loader loads
    it, in each precision."""
    torch.manual_seed(0)
    path = tmp_path / "clip.pt"
    torch.save(open_clip.create_model("ViT-Ti-8-64").state_dict(), path)
    openclips = open_clip.load_openai_model.__wrapped__
    images = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    for precision in ("fp32", "bf16"):
        ours = open_clip.load_openai_model(str(path), precision, "cpu")
        theirs = openclips(str(path), precision, "cpu")
        assert (ours.visual.image_mean, ours.visual.image_std) == (
            open_clip.OPENAI_DATASET_MEAN,
            open_clip.OPENAI_DATASET_STD,
        )
        assert_same_state(ours.state_dict(), theirs.state_dict())
        images = images.to(ours.visual.conv1.weight.dtype)
        assert torch.equal(ours.encode_image(images), theirs.encode_image(images))
    assert images.dtype == torch.bfloat16


def test_torchscript_archives_are_told_from_torch_save_files(tmp_path: Path) -> None:
    model = torch.nn.Linear(2, 2)
    torch.jit.save(torch.jit.script(model), tmp_path / "scripted.pt")
    torch.save(model.state_dict(), tmp_path / "state.pt")
    torch.save(model.state_dict(), tmp_path / "legacy.pt", _use_new_zipfile_serialization=False)
    assert [is_torchscript_archive(tmp_path / name) for name in sorted(os.listdir(tmp_path))] == [
        False,
        True,
        False,
    ]
    # before: "cannot be read, it is cut short or corrupt (RuntimeError)"
    with pytest.raises(
        ValueError, match=r"scripted\.pt is a TorchScript archive .* not a checkpoint"
    ):
        read_state_dict(tmp_path / "scripted.pt")


def assert_same_state(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) and a[k].dtype == b[k].dtype for k in a), a.keys()


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
