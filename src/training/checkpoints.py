"""Checkpoints that survive a kill at any moment: atomic writes, and ``--resume latest`` that
never picks an incomplete file.

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
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import torch
from open_clip_train.main import get_latest_checkpoint, natural_key

PARTIAL_SUFFIX = ".partial"  # not ``.pt``: resume never considers these files
_ZIP_MAGIC = b"PK\x03\x04"  # how torch.save's (zip) checkpoints begin


def atomic_write(path: str | os.PathLike[str], write: Callable[[IO[bytes]], Any]) -> None:
    """Write ``path`` with ``write(file)`` so that ``path`` is only ever absent, its previous
    content or the complete new content.

    The data goes to ``<path>.partial`` in the same folder, is flushed to disk, then renamed over
    ``path`` (atomic on POSIX file systems). A ``.partial`` file left by a killed process is
    overwritten by the next write of the same path.
    """
    path = Path(path)
    partial = path.with_name(path.name + PARTIAL_SUFFIX)
    try:
        with partial.open("wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    os.replace(partial, path)
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)  # make the rename itself durable
    finally:
        os.close(folder)


def atomic_save(obj: Any, f: Any, *args: Any, **kwargs: Any) -> None:
    """``torch.save``, writing to a file name atomically (:func:`atomic_write`); open files and
    buffers are written as ``torch.save`` writes them."""
    if isinstance(f, (str, os.PathLike)):
        atomic_write(f, lambda file: torch.serialization.save(obj, file, *args, **kwargs))
    else:
        torch.serialization.save(obj, f, *args, **kwargs)


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
