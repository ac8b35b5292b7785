"""open_clip_sparo.util.errors: the one entry-point handler, for places that cannot be written."""

from __future__ import annotations

import errno
import json
from pathlib import Path

import pytest
import torch
from fork_utils import fork_config

from open_clip_sparo import cli
from open_clip_sparo.util.errors import UnusableDataError, expected_message, run_entry_point
from open_clip_sparo.util.files import write_json


def convert_fork_argv(tmp_path: Path, out: Path) -> list[str]:
    """``sparo convert-fork`` of a small fork model (its checkpoint written as the fork does)."""
    from fork_utils import build, save_fork_training_checkpoint, to_fork_layout

    config = tmp_path / "fork.json"
    config.write_text(json.dumps(fork_config()))
    checkpoint = save_fork_training_checkpoint(
        to_fork_layout(build(fork_config())), tmp_path / "epoch_1.pt"
    )
    return ["convert-fork", "--config", str(config), "--checkpoint", str(checkpoint)] + [
        "--out",
        str(out),
    ]


def test_a_dangling_symlink_as_output_is_named_with_what_to_do(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    link = tmp_path / "out"
    link.symlink_to(tmp_path / "gone")
    # before: "[Errno 17] File exists" (mkdir of the link) or the link silently replaced
    assert cli.main(convert_fork_argv(tmp_path, link)) == 1
    error = capsys.readouterr().err
    assert error.startswith("sparo convert-fork: error: ")
    assert (
        f"{link} is a symbolic link to {tmp_path / 'gone'}, which does not exist; create its "
        in error
    )
    assert "target, remove the link, or choose another path" in error and error.count("\n") == 1
    assert not (tmp_path / "gone").exists() and link.is_symlink()


@pytest.mark.parametrize(
    ("code", "advice"),
    [
        (errno.EACCES, "make {folder} writable for you"),
        (errno.EPERM, "immutable: chattr -i"),
        (errno.EROFS, "is on a read-only file system; choose a path on a writable one"),
    ],
)
def test_an_unwritable_folder_is_named_with_what_to_do(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    code: int,
    advice: str,
) -> None:
    folder = tmp_path / "read-only"
    folder.mkdir()
    open_file = Path.open

    def refused(self: Path, *args: object, **kwargs: object) -> object:
        if self.parent == folder:  # as the kernel refuses it (tests run as root)
            raise OSError(code, "refused", str(self))
        return open_file(self, *args, **kwargs)

    monkeypatch.setattr(Path, "open", refused)
    path = folder / "results.json"

    def main(argv: None) -> int:
        write_json(path, {"top1": 0.5})
        return 0

    # before: "[Errno 13] Permission denied: '.../results.json.partial'" (or a traceback)
    assert run_entry_point("sparo eval", main, None) == 1
    error = capsys.readouterr().err
    assert error.startswith("sparo eval: error: ") and str(path) in error
    assert ".partial" not in error and error.count("\n") == 1
    assert advice.format(folder=folder) in error
    assert error.endswith("(nothing was written).\n")


def test_any_command_reports_a_path_the_system_refuses_in_one_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    def main(argv: None) -> int:  # e.g. open_clip_train making its log folder
        raise PermissionError(errno.EACCES, "Permission denied", "/logs/run")

    assert run_entry_point("training.main", main, None) == 1
    assert capsys.readouterr().err == (
        "training.main: error: no permission for /logs/run (Permission denied); make /logs "
        "writable for you (it may be owned by someone else, read-only, or immutable: chattr -i), "
        "or choose another path\n"
    )


def test_an_expected_failure_has_one_message_for_every_place_it_is_reported() -> None:
    """What the console, a run's log and its failure record say (``training.main`` writes all
    three): a refused path with what to do, never the raw ``[Errno N]``; None for a bug."""
    refused = expected_message(PermissionError(errno.EACCES, "Permission denied", "/logs/run"))
    assert refused is not None and refused.startswith("no permission for /logs/run (")
    read_only = expected_message(OSError(errno.EROFS, "Read-only file system", "/logs/run"))
    assert read_only == "/logs/run is on a read-only file system; choose a path on a writable one"
    assert expected_message(FileNotFoundError("the checkpoint x.pt does not exist")) == (
        "the checkpoint x.pt does not exist"
    )
    assert expected_message(OSError(errno.EIO, "Input/output error", "/logs/run")) is None
    assert expected_message(RuntimeError("a bug")) is None


class _Refuses(torch.utils.data.IterableDataset):
    def __iter__(self):
        raise UnusableDataError("not one usable training sample; check --train-data.")


def test_an_expected_failure_in_a_loader_worker_is_its_own_message() -> None:
    """PyTorch re-raises it in the main process as ``Caught ... Original Traceback ...``."""
    with pytest.raises(UnusableDataError) as caught:
        next(iter(torch.utils.data.DataLoader(_Refuses(), num_workers=1)))
    assert "Original Traceback" in str(caught.value)
    message = "not one usable training sample; check --train-data."
    assert expected_message(caught.value) == message
    assert expected_message(ValueError(f"Caught ValueError: {message}")) == (
        f"Caught ValueError: {message}"  # not PyTorch's wrapping: as it is
    )


class _RefusesQuoting(torch.utils.data.IterableDataset):
    def __iter__(self):
        raise ValueError("/data/sizes.json: ValueError: Expecting value; fix the file.")


def test_a_loader_worker_message_that_quotes_its_own_error_type_stays_whole() -> None:
    with pytest.raises(ValueError) as caught:
        next(iter(torch.utils.data.DataLoader(_RefusesQuoting(), num_workers=1)))
    assert expected_message(caught.value) == (
        "/data/sizes.json: ValueError: Expecting value; fix the file."
    )  # before: "Expecting value; fix the file."
