"""``--resume latest`` that never picks an incomplete checkpoint (writes are atomic through
:func:`open_clip_sparo.files.atomic_save`).

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

from open_clip_train.main import get_latest_checkpoint, natural_key

_ZIP_MAGIC = b"PK\x03\x04"  # how torch.save's (zip) checkpoints begin


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
