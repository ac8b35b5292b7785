"""The one rule for the folders runs write into (training, DINO, generated data, demos).

A run folder is marked by its settings file, written atomically when the folder is claimed.
Claiming a folder:

- absent or empty: the settings file is written (a new run);
- holding the settings file: the run continues where the caller allows it and the settings are
  the same (on the keys that identify the run); otherwise it is refused, naming the fix;
- holding a recorded failure (:func:`recording_failure`) and no checkpoint: the failed run saved
  nothing, so the folder is reused and the new settings replace the old;
- holding other files and no settings file: refused, unless the caller adopts such a folder.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .errors import expected_message
from .files import read_json, write_json, write_text

FAILURE_NAME = "failed.txt"  # the error that ended a run, recorded in its folder


def has_checkpoint(folder: str | os.PathLike[str]) -> bool:
    """Whether a run ``folder`` holds a ``.pt`` file (in it or its ``checkpoints/``)."""
    folder = Path(folder)
    return any(folder.glob("*.pt")) or any(folder.glob("checkpoints/*.pt"))


def failed_without_checkpoint(folder: str | os.PathLike[str]) -> bool:
    """Whether ``folder`` holds a run that failed before it saved a checkpoint."""
    folder = Path(folder)
    return (folder / FAILURE_NAME).is_file() and not has_checkpoint(folder)


def check_run_folder(
    folder: str | os.PathLike[str],
    settings_name: str,
    settings: Mapping[str, Any],
    *,
    what: str,
    fix: str,
    continuing: bool = True,
    keys: Sequence[str] | None = None,
    adopt: bool = False,
) -> bool:
    """Check that a run with ``settings`` may write into ``folder`` (the rule above); True when
    the folder holds this run already (same settings on ``keys``, default all), False when the
    run is new there. A failed run without checkpoint is cleared (its settings file and failure
    record removed). ``continuing``: the caller continues an existing run (e.g. ``--resume``);
    ``adopt``: other files in a folder without settings file are fine; ``what`` names the
    folder in messages (``"run folder"``), ``fix`` says what to do instead."""
    folder = Path(folder)
    path = folder / settings_name
    if path.exists() and failed_without_checkpoint(folder):
        logging.info(f"{folder}: reusing the folder of a run that failed before saving anything")
        path.unlink()
        (folder / FAILURE_NAME).unlink()
    if path.exists():
        if not continuing:
            raise FileExistsError(f"{what} {folder} already holds a run ({settings_name}); {fix}")
        recorded = read_json(path, f"the {what}'s settings")
        differing = [k for k in keys or settings if recorded.get(k) != settings[k]]
        if differing:
            raise ValueError(
                f"{path} records other settings than this run's ({', '.join(differing)}); {fix}"
            )
        return True
    if not adopt and folder.is_dir() and any(folder.iterdir()):
        raise FileExistsError(
            f"{folder} is a non-empty folder that is not a {what} (it has no {settings_name}); "
            f"{fix}"
        )
    return False


def claim_run_folder(
    folder: str | os.PathLike[str],
    settings_name: str,
    settings: Mapping[str, Any],
    **rule: Any,
) -> bool:
    """:func:`check_run_folder`, then write the settings file of a new run (atomically, never
    over another); True when the folder held this run already."""
    if check_run_folder(folder, settings_name, settings, **rule):
        return True
    write_json(Path(folder) / settings_name, settings, overwrite=False)
    return False


def record_failure(folder: str | os.PathLike[str], error: BaseException) -> None:
    """Record in the run ``folder`` (if it exists) the error that ended its run. A record that
    cannot be written (the full disk or read-only file system that ended the run) is a warning,
    so that ``error`` itself goes on to the user."""
    if Path(folder).is_dir():
        message = expected_message(error) or error
        try:
            write_text(Path(folder) / FAILURE_NAME, f"{type(error).__name__}: {message}\n")
        except OSError as unwritten:
            logging.warning(f"the run's failure is not recorded: {unwritten}")


@contextmanager
def recording_failure(folder: str | os.PathLike[str]) -> Iterator[None]:
    """Inside the block, an exception is recorded in ``folder`` (:func:`record_failure`) before
    it goes on, so that a run that failed before its first checkpoint does not block its rerun."""
    try:
        yield
    except Exception as error:
        record_failure(folder, error)
        raise


def set_aside(path: str | os.PathLike[str]) -> Path:
    """Rename the file ``path`` of a failed run to the first free ``<stem>.failed-N<suffix>``
    beside it, so that a rerun writes its own without losing it; the new path."""
    path = Path(path)
    number = 1
    while (kept := path.with_name(f"{path.stem}.failed-{number}{path.suffix}")).exists():
        number += 1
    path.rename(kept)
    return kept
