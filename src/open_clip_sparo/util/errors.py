"""Expected failures, and the one handler every entry point runs its ``main`` under.

An expected failure is bad input the user can fix (a wrong argument, a missing or existing file,
an unreadable checkpoint): its message names the problem and the fix. The handler prints it as
one line, ``<prog>: error: <message>``, and exits with status 1; anything else is a bug and keeps
its traceback.
"""

from __future__ import annotations

import errno
import os
import re
import sys
from collections.abc import Callable, Sequence
from typing import TypeVar


class NonFiniteLossError(FloatingPointError):
    """A training loss that is NaN or infinite: the run stops before it saves a checkpoint
    (the rule: :mod:`open_clip_sparo.util.loss_watch`)."""


class DiskFullError(OSError):
    """A file that could not be written for lack of space (or quota): the message names the
    folder and the space needed; what was there before is left as it was."""


class UnusableDataError(RuntimeError):
    """Training data that cannot give the run its batches (not one usable sample, or fewer than
    one batch): the message says what to change instead of the run waiting forever."""


# what an expected failure raises; every other exception is a bug
EXPECTED_ERRORS: tuple[type[BaseException], ...] = (
    ValueError,
    NonFiniteLossError,
    DiskFullError,
    UnusableDataError,
    FileExistsError,
    FileNotFoundError,
    IsADirectoryError,
    NotADirectoryError,
    PermissionError,
)
Argv = TypeVar("Argv", bound=Sequence[str] | None)


def dangling_link_message(path: str | os.PathLike[str]) -> str | None:
    """What to do when ``path``, or a folder above it, is a symbolic link to nothing; None when
    none is."""
    path = os.path.abspath(path)
    while True:
        if os.path.islink(path) and not os.path.exists(path):
            return (
                f"{path} is a symbolic link to {os.readlink(path)}, which does not exist; create "
                "its target, remove the link, or choose another path"
            )
        parent = os.path.dirname(path)
        if parent == path:
            return None
        path = parent


def unusable_path_message(error: OSError, path: str | None = None) -> str | None:
    """One line naming the path of an operating-system ``error`` (``path`` if given, else the
    error's) for no permission, a read-only file system, a dangling link or a full disk, and
    what to do; None for other errors."""
    path = path or error.filename
    if path is None or error.errno is None:
        return None
    if (link := dangling_link_message(path)) is not None:
        return link
    folder = os.path.dirname(os.path.abspath(path))
    if error.errno in (errno.EACCES, errno.EPERM):
        return (
            f"no permission for {path} ({error.strerror}); make {folder} writable for you (it "
            "may be owned by someone else, read-only, or immutable: chattr -i), or choose "
            "another path"
        )
    if error.errno == errno.EROFS:
        return f"{path} is on a read-only file system; choose a path on a writable one"
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"no space left for {path} ({error.strerror}); free some space or write elsewhere"
    return None


def expected_message(error: BaseException) -> str | None:
    """The one line an expected failure is reported with, wherever it is reported (the console,
    a run's log): for a path that cannot be used (no permission, a read-only file system, a
    dangling link, a full disk) the path and what to do, never the raw ``[Errno N]``; else the
    error's message. None for any other error: a bug, which keeps its traceback."""
    if isinstance(error, OSError) and (message := unusable_path_message(error)) is not None:
        return message
    return _without_worker_traceback(error) if isinstance(error, EXPECTED_ERRORS) else None


def _without_worker_traceback(error: BaseException) -> str:
    """The message of ``error``; for one raised in a DataLoader worker process, which PyTorch
    re-raises in the main process as ``Caught <type> in DataLoader worker process N.`` with the
    worker's traceback, the original message that traceback ends with."""
    message = str(error)
    if not message.startswith("Caught ") or "\nOriginal Traceback" not in message:
        return message
    # the last traceback's first line at its start naming the type (maybe with its module)
    traceback = message.rpartition("Traceback (most recent call last):\n")[2]
    name = re.escape(type(error).__name__)
    found = re.search(rf"^(?:[\w.]+\.)?{name}: ", traceback, re.MULTILINE)
    return traceback[found.end() :].strip() if found else message


def run_entry_point(prog: str, main: Callable[[Argv], int], argv: Argv) -> int:
    """``main(argv)``; an expected failure (:func:`expected_message`) becomes one line on
    stderr and exit status 1."""
    try:
        return main(argv)
    except Exception as error:
        message = expected_message(error)
        if message is None:
            raise
        print(f"{prog}: error: {message}", file=sys.stderr)
        return 1
