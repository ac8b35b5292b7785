"""Expected failures, and the one handler every entry point runs its ``main`` under.

An expected failure is bad input the user can fix (a wrong argument, a missing or existing file,
an unreadable checkpoint): its message names the problem and the fix. The handler prints it as
one line, ``<prog>: error: <message>``, and exits with status 1; anything else is a bug and keeps
its traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import TypeVar


class NonFiniteLossError(FloatingPointError):
    """A training loss that is NaN or infinite: the run stops before it saves a checkpoint
    (the rule: :mod:`open_clip_sparo.util.loss_watch`)."""


# what an expected failure raises; every other exception is a bug
EXPECTED_ERRORS: tuple[type[BaseException], ...] = (
    ValueError,
    NonFiniteLossError,
    FileExistsError,
    FileNotFoundError,
    IsADirectoryError,
    NotADirectoryError,
    PermissionError,
)
Argv = TypeVar("Argv", bound=Sequence[str] | None)


def run_entry_point(prog: str, main: Callable[[Argv], int], argv: Argv) -> int:
    """``main(argv)``; an expected failure becomes one line on stderr and exit status 1."""
    try:
        return main(argv)
    except EXPECTED_ERRORS as error:
        print(f"{prog}: error: {error}", file=sys.stderr)
        return 1
