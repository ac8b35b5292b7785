"""open_clip_sparo.util.files: the atomic writer."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import torch

from open_clip_sparo.util.files import atomic_save


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
