"""A training run stopped by a signal says so: SLURM preempts and cancels a job with SIGTERM,
which by default ends the process silently with exit status 143. Under :func:`logged_stop` the
run logs one line naming the signal and how to resume, then ends exactly as the signal would
have ended it (same status, no cleanup that could half-write a checkpoint)."""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

STOP_SIGNALS = (signal.SIGTERM,)


@contextmanager
def logged_stop(prog: str, resume: str = "--resume latest") -> Iterator[None]:
    """While in the block, a stop signal logs ``<prog>: stopped by signal SIGTERM, resume with
    <resume>`` (at WARNING, so every rank's log has it) and then ends the process with the
    signal's default action. Processes forked inside the block (data loader workers) end
    silently as before. Only the main thread can install handlers; elsewhere this does
    nothing."""
    owner = os.getpid()

    def stop(signum: int, _frame: FrameType | None) -> None:
        if os.getpid() == owner:
            name = signal.Signals(signum).name
            logging.getLogger(prog).warning(
                f"{prog}: stopped by signal {name}, resume with {resume}"
            )
            for handler in logging.root.handlers:
                handler.flush()
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)

    try:
        previous = {s: signal.signal(s, stop) for s in STOP_SIGNALS}
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
