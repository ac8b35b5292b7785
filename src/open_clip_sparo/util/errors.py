"""Expected failures, and the one handler every entry point runs its ``main`` under.

An expected failure is bad input the user can fix (a wrong argument, a missing or existing file,
an unreadable checkpoint): its message names the problem and the fix. The handler prints it as
one line, ``<prog>: error: <message>``, and exits with status 1; anything else is a bug and keeps
its traceback.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Sequence
from typing import TypeVar


class NonFiniteLossError(FloatingPointError):
    """A training loss that is NaN or infinite: the run stops before it changes the weights."""


class DiskFullError(OSError):
    """A file that could not be written for lack of space (or quota): the message names the
    folder and the space needed; what was there before is left as it was."""


# what an expected failure raises; every other exception is a bug
EXPECTED_ERRORS: tuple[type[BaseException], ...] = (
    ValueError,
    NonFiniteLossError,
    DiskFullError,
    FileExistsError,
    FileNotFoundError,
    IsADirectoryError,
    NotADirectoryError,
    PermissionError,
)
Argv = TypeVar("Argv", bound=Sequence[str] | None)


def check_finite_loss(loss: float, where: str, kept: str, causes: Sequence[str]) -> None:
    """Raise :class:`NonFiniteLossError` if ``loss`` is NaN or infinite: the one rule of both
    training loops. ``where`` names the step, ``kept`` the last good checkpoint, ``causes`` the
    likely causes with their flags."""
    if math.isfinite(loss):
        return
    raise NonFiniteLossError(
        f"the training loss is {loss} at {where}; training stopped before this step changed the "
        f"weights, and nothing of it was saved ({kept}). Likely causes: {'; '.join(causes)}."
    )


def run_entry_point(prog: str, main: Callable[[Argv], int], argv: Argv) -> int:
    """``main(argv)``; an expected failure becomes one line on stderr and exit status 1."""
    try:
        return main(argv)
    except EXPECTED_ERRORS as error:
        print(f"{prog}: error: {error}", file=sys.stderr)
        return 1
