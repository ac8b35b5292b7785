"""Bad checkpoints for the tests of the one checkpoint reader and its callers."""

from __future__ import annotations

import zipfile
from pathlib import Path

import torch


class WritesMarker:
    """Unpickled, it creates the file ``marker``: a harmless stand-in for a crafted checkpoint's
    code."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (open, (str(self.marker), "w"))


def crafted_checkpoint(
    folder: Path, name: str = "epoch_1.pt", posing_as_torchscript: bool = False
) -> tuple[Path, Path]:
    """A checkpoint whose unpickling would run code (create a marker file): path, marker.

    ``posing_as_torchscript``: in PyTorch's legacy (non-zip) format, followed by a zip file
    holding ``archive/constants.pkl``, which Python's ``zipfile`` finds at the end of the file
    and takes for a TorchScript archive; PyTorch, which reads a zip only from the file's first
    byte, unpickles the legacy part."""
    marker = folder / "code-ran"
    path = folder / name
    state = {"visual.conv1.weight": torch.zeros(1)}
    checkpoint = {"epoch": 1, "state_dict": state, "optimizer": WritesMarker(marker)}
    torch.save(checkpoint, path, _use_new_zipfile_serialization=not posing_as_torchscript)
    if posing_as_torchscript:
        with zipfile.ZipFile(path, "a") as archive:  # appended after the pickle
            archive.writestr("archive/constants.pkl", b"")
    return path, marker


# kind of bad checkpoint -> what the reader's one-line error says about it
BAD_CHECKPOINTS = {
    "empty": "is empty (0 bytes)",
    "crafted": "is not a checkpoint of tensors",
    "list": "holds no state dict",
    "folder": "is a folder, not a file",
}


def bad_checkpoint(folder: Path, kind: str) -> Path:
    """A checkpoint of ``kind`` (a key of :data:`BAD_CHECKPOINTS`) in ``folder``."""
    path = folder / "bad.pt"
    if kind == "empty":
        path.touch()
    elif kind == "crafted":
        path = crafted_checkpoint(folder)[0]
    elif kind == "list":
        torch.save([torch.zeros(2)], path)
    else:
        path.mkdir()
    return path
