"""util.run_folder: the one rule for claiming a run folder."""

from __future__ import annotations

import errno
import json
from pathlib import Path

import pytest

from open_clip_sparo.util.errors import DiskFullError
from open_clip_sparo.util.run_folder import (
    FAILURE_NAME,
    claim_run_folder,
    failed_without_checkpoint,
    recording_failure,
    set_aside,
)

RULE = {"what": "run folder", "fix": "choose another folder."}


def test_a_new_folder_is_claimed_and_the_same_settings_continue(tmp_path: Path) -> None:
    run = tmp_path / "run"
    assert claim_run_folder(run, "settings.json", {"a": 1, "b": [2]}, **RULE) is False
    assert json.loads((run / "settings.json").read_text()) == {"a": 1, "b": [2]}
    assert claim_run_folder(run, "settings.json", {"a": 1, "b": [2]}, **RULE) is True
    assert not list(run.glob("*.partial"))


def test_other_settings_and_a_new_run_are_refused(tmp_path: Path) -> None:
    claim_run_folder(tmp_path, "settings.json", {"a": 1, "b": 2}, **RULE)
    with pytest.raises(ValueError, match=r"records other settings than this run's \(b\); choose"):
        claim_run_folder(tmp_path, "settings.json", {"a": 1, "b": 3}, **RULE)
    # only the keys that identify the run count
    assert claim_run_folder(tmp_path, "settings.json", {"a": 1, "b": 3}, keys=["a"], **RULE)
    with pytest.raises(FileExistsError, match="already holds a run"):
        claim_run_folder(tmp_path, "settings.json", {"a": 1, "b": 2}, continuing=False, **RULE)
    assert json.loads((tmp_path / "settings.json").read_text()) == {"a": 1, "b": 2}


def test_a_foreign_folder_is_refused_unless_adopted(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="is a non-empty folder that is not a run folder"):
        claim_run_folder(tmp_path, "settings.json", {"a": 1}, **RULE)
    assert claim_run_folder(tmp_path, "settings.json", {"a": 1}, adopt=True, **RULE) is False
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_a_failed_run_without_checkpoint_is_reused(tmp_path: Path) -> None:
    claim_run_folder(tmp_path, "settings.json", {"lr": 1e9}, **RULE)
    with pytest.raises(ValueError, match="nan"), recording_failure(tmp_path):
        raise ValueError("the loss is nan")
    assert (tmp_path / FAILURE_NAME).read_text() == "ValueError: the loss is nan\n"
    assert failed_without_checkpoint(tmp_path)
    # other settings, and not continuing: a failed run that saved nothing blocks neither
    assert claim_run_folder(tmp_path, "settings.json", {"lr": 1}, continuing=False, **RULE) is False
    assert json.loads((tmp_path / "settings.json").read_text()) == {"lr": 1}
    assert not (tmp_path / FAILURE_NAME).exists()


def test_a_failed_run_with_a_checkpoint_is_kept(tmp_path: Path) -> None:
    claim_run_folder(tmp_path, "settings.json", {"lr": 1}, **RULE)
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "epoch_1.pt").write_bytes(b"saved")
    with pytest.raises(RuntimeError), recording_failure(tmp_path):
        raise RuntimeError("later")
    assert not failed_without_checkpoint(tmp_path)
    with pytest.raises(ValueError, match=r"\(lr\)"):
        claim_run_folder(tmp_path, "settings.json", {"lr": 2}, **RULE)


def test_a_failure_its_record_cannot_be_written_for_goes_on_unchanged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A full disk (or read-only file system) that stopped the run also refuses its record: the
    run's own error, with the path and space it names, is what the user sees."""
    open_path = Path.open

    def disk_full(self: Path, *args: object, **kwargs: object) -> object:
        if self.name.endswith(".partial"):  # every file the atomic writer starts
            raise OSError(errno.ENOSPC, "No space left on device", str(self))
        return open_path(self, *args, **kwargs)

    monkeypatch.setattr(Path, "open", disk_full)
    stopped = DiskFullError(f"no space left for {tmp_path / 'epoch_3.pt'}: it needs 1.2 GB")
    with pytest.raises(DiskFullError) as error, recording_failure(tmp_path):
        raise stopped
    assert error.value is stopped  # before: an error about failed.txt, raised in its place
    assert not (tmp_path / FAILURE_NAME).exists()
    assert f"{tmp_path / FAILURE_NAME}" in caplog.text


def test_set_aside_keeps_every_earlier_file(tmp_path: Path) -> None:
    for text in ("first", "second"):
        (tmp_path / "out.log").write_text(text)
        set_aside(tmp_path / "out.log")
    assert (tmp_path / "out.failed-1.log").read_text() == "first"
    assert (tmp_path / "out.failed-2.log").read_text() == "second"
    assert not (tmp_path / "out.log").exists()
