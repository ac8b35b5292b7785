"""training.checkpoints: the newest complete checkpoint of a run."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from open_clip_sparo.util.files import PARTIAL_SUFFIX
from training.checkpoints import latest_checkpoint


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
