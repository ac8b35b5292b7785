"""Tiny data and checkpoints for the DINO tests."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from data_utils import write_image_folder

from open_clip_sparo.dino.train import build_student, parse_args, resolve_args, run_config

# four classes that differ in colour, so frozen random features already separate them a little
CLASSES = {"0_red": "red", "1_green": "green", "2_blue": "blue", "3_purple": "purple"}
# the tiny DINO head used by every test
HEAD_ARGS = ["--out-dim", "64", "--head-hidden-dim", "64", "--head-bottleneck-dim", "32"]


@contextmanager
def one_thread() -> Iterator[None]:
    """PyTorch on one thread: on a shared 2-core machine, spinning OpenMP threads are far
    slower than one."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def labelled_folders(root: Path, per_class: int = 6) -> tuple[Path, Path]:
    """(train, val) ImageFolders of coloured shapes (the synthetic world), one class per colour."""
    train = write_image_folder(root / "train", CLASSES, per_class=per_class, seed=0)
    val = write_image_folder(root / "val", CLASSES, per_class=per_class // 2, seed=1)
    return train, val


def untrained_checkpoint(path: Path, backbone: str, seed: int = 0) -> Path:
    """A checkpoint in the training script's format, of a freshly initialised student."""
    args = parse_args(["--data", "unused", "--backbone", backbone, *HEAD_ARGS])
    resolve_args(args, torch.device("cpu"))
    config = run_config(args)
    student = build_student(config, seed)
    state = {"epoch": 0, "config": config, "student": student.state_dict()}
    torch.save({**state, "teacher": student.state_dict()}, path)
    return path


def fails_with(capsys, main: Callable[[list[str]], int], argv: list[str], pattern: str) -> str:
    """Run a command's ``main``; check it ends as one line ``<prog>: error: ...`` matching
    ``pattern`` and exit status 1, and return that line."""
    assert main(argv) == 1
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert re.search(r"^\S.*: error: ", line) and re.search(pattern, line), line
    return line
