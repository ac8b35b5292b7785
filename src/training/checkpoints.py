"""``--resume latest`` that never picks an incomplete checkpoint (writes are atomic through
:func:`open_clip_sparo.util.files.atomic_save`), and ``--resume`` / ``--pretrained`` files read with
errors that name the file and the problem.

open_clip_train writes ``epoch_N.pt`` with ``torch.save`` straight to its final name, so a run
killed while saving leaves a truncated ``epoch_N.pt``, which ``--resume latest`` then picks (it
takes the last ``*.pt`` by name) and fails to load: the run cannot resume without deleting the
file by hand.
"""

from __future__ import annotations

import glob
import logging
import os
import zipfile
from typing import Any

import torch
from open_clip.factory import load_state_dict
from open_clip_train.file_utils import pt_load
from open_clip_train.main import get_latest_checkpoint, natural_key

from open_clip_sparo.util.files import load_torch_file

_ZIP_MAGIC = b"PK\x03\x04"  # how torch.save's (zip) checkpoints begin
_TRAIN_KEYS = {"epoch", "state_dict", "optimizer"}  # what open_clip_train's resume reads


def is_incomplete_checkpoint(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is empty or a ``torch.save`` zip archive cut short (no end record)."""
    with open(path, "rb") as file:
        head = file.read(len(_ZIP_MAGIC))
    return not head or (head == _ZIP_MAGIC and not zipfile.is_zipfile(path))


def latest_checkpoint(path: str, remote: bool) -> str | None:
    """open_clip_train's ``get_latest_checkpoint`` (the last ``*.pt`` under ``path`` in natural
    name order), skipping incomplete files with a warning that names them."""
    if remote:
        return get_latest_checkpoint(path, remote)
    checkpoints = sorted(glob.glob(path + "**/*.pt", recursive=True), key=natural_key)
    for checkpoint in reversed(checkpoints):
        if not is_incomplete_checkpoint(checkpoint):
            return checkpoint
        logging.warning(
            f"--resume latest: skipping {checkpoint}, an incomplete checkpoint (a save that was "
            "interrupted); delete it once you have checked it is not needed."
        )
    return None


def read_resume_checkpoint(file_path: str, map_location: Any = None) -> Any:
    """open_clip_train's ``pt_load`` of the ``--resume`` checkpoint, with an error naming the
    file and the problem for an empty, cut-short, corrupt or foreign file (remote paths as
    upstream)."""
    if "://" in str(file_path):
        return pt_load(file_path, map_location)
    checkpoint = load_torch_file(
        file_path, "--resume checkpoint", lambda path: pt_load(str(path), map_location)
    )
    if not isinstance(checkpoint, dict) or (
        "epoch" in checkpoint and not _TRAIN_KEYS <= set(checkpoint)
    ):
        raise ValueError(
            f"--resume checkpoint {file_path} is not a checkpoint of open_clip_train (it needs "
            f"{sorted(_TRAIN_KEYS)}); give an epoch_N.pt of a run, or a model's weights with "
            "--pretrained."
        )
    return checkpoint


def read_pretrained(checkpoint_path: str, device: Any = "cpu", weights_only: bool = True) -> Any:
    """OpenCLIP's ``load_state_dict`` of a ``--pretrained`` file, with an error naming the file
    and the problem for an empty, cut-short, corrupt or foreign file."""
    if "://" in str(checkpoint_path):
        return load_state_dict(checkpoint_path, device, weights_only)
    try:
        state_dict = load_torch_file(
            checkpoint_path,
            "--pretrained checkpoint",
            lambda path: load_state_dict(str(path), device, weights_only),
        )
    except StopIteration as error:  # OpenCLIP reads the first key of an empty state dict
        raise ValueError(f"--pretrained checkpoint {checkpoint_path} holds no tensors.") from error
    if not isinstance(state_dict, dict) or not all(
        isinstance(v, torch.Tensor) for v in state_dict.values()
    ):
        raise ValueError(
            f"--pretrained checkpoint {checkpoint_path} is not a state dict of tensors (nor an "
            "open_clip_train checkpoint with one); give a model's weights."
        )
    return state_dict
