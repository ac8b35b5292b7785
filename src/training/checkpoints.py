"""``--resume latest`` that never picks an incomplete checkpoint (writes are atomic through
:func:`open_clip_sparo.util.files.atomic_save`), and ``--resume`` / ``--pretrained`` files read by
the package's checkpoint reader (tensors only, no code run; errors that name the file and the
problem).

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

import fsspec
from open_clip_train.main import get_latest_checkpoint, natural_key

from open_clip_sparo.registry import read_weights
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
    """Replaces open_clip_train's ``pt_load`` of the ``--resume`` checkpoint, which reads
    without ``weights_only`` (so ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1`` would run the file's
    code): the package's reader, tensors only, with an error naming the file and the problem
    for an empty, cut-short, corrupt or foreign file. Remote paths are opened as upstream
    opens them (fsspec). Tensors are read to the CPU, as open_clip_train asks."""
    what, fix = "--resume checkpoint", "give another checkpoint (e.g. an earlier epoch_N.pt)."
    if "://" in str(file_path):
        with fsspec.open(file_path, "rb") as stream:
            checkpoint = load_torch_file(file_path, what, fix, stream=stream)
    else:
        checkpoint = load_torch_file(file_path, what, fix)
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
    """OpenCLIP's ``load_state_dict`` during a run: the package's (``registry.read_weights``),
    its errors naming the file as the ``--pretrained`` checkpoint."""
    return read_weights(checkpoint_path, device, weights_only, what="--pretrained checkpoint")
