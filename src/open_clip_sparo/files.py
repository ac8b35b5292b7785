"""Writing files without losing what is there: one atomic writer, one no-overwrite rule, and one
finder of a run's newest ``epoch_N.pt``.

Every file this project writes (checkpoints, exports, results, reports) goes through
:func:`atomic_write`, so a reader or a killed process only ever sees the old content or the
complete new one; files that must not replace earlier work are written with ``overwrite=False``
or checked first with :func:`refuse_existing`.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import zipfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO, Any

import torch

PARTIAL_SUFFIX = ".partial"  # not ``.pt``: a resume never considers these files
_EPOCH_CHECKPOINT = re.compile(r"epoch_(\d+)\.pt")


def refuse_existing(paths: Iterable[str | os.PathLike[str]], fix: str) -> None:
    """Raise ``FileExistsError`` naming every path of ``paths`` that exists, and ``fix``."""
    existing = [str(p) for p in paths if Path(p).exists()]
    if existing:
        raise FileExistsError(f"{existing} already exist; {fix}")


def atomic_write(
    path: str | os.PathLike[str], write: Callable[[IO[bytes]], Any], overwrite: bool = True
) -> None:
    """Write ``path`` with ``write(file)`` so that ``path`` is only ever absent, its previous
    content or the complete new content.

    The data goes to ``<path>.partial`` in the same folder, is flushed to disk, then renamed over
    ``path`` (atomic on POSIX file systems). A ``.partial`` file left by a killed process is
    overwritten by the next write of the same path. With ``overwrite=False`` an existing
    ``path`` is refused before anything is written.
    """
    path = Path(path)
    if not overwrite:
        refuse_existing([path], "choose another path or remove it (nothing was written).")
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + PARTIAL_SUFFIX)
    try:
        with partial.open("wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    os.replace(partial, path)
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)  # make the rename itself durable
    finally:
        os.close(folder)


def write_text(path: str | os.PathLike[str], text: str, overwrite: bool = True) -> None:
    """:func:`atomic_write` of UTF-8 text."""
    atomic_write(path, lambda file: file.write(text.encode()), overwrite=overwrite)


def write_json(path: str | os.PathLike[str], obj: Any, overwrite: bool = True) -> None:
    """:func:`atomic_write` of ``obj`` as indented JSON."""
    write_text(path, json.dumps(obj, indent=2) + "\n", overwrite=overwrite)


def atomic_save(obj: Any, f: Any, *args: Any, **kwargs: Any) -> None:
    """``torch.save``, writing to a file name atomically (:func:`atomic_write`); open files and
    buffers are written as ``torch.save`` writes them."""
    if isinstance(f, (str, os.PathLike)):
        atomic_write(f, lambda file: torch.serialization.save(obj, file, *args, **kwargs))
    else:
        torch.serialization.save(obj, f, *args, **kwargs)


def epoch_checkpoints(folder: str | os.PathLike[str]) -> dict[int, Path]:
    """The ``epoch_N.pt`` files directly in ``folder``, by ``N``."""
    return {
        int(match.group(1)): path
        for path in Path(folder).glob("epoch_*.pt")
        if (match := _EPOCH_CHECKPOINT.fullmatch(path.name))
    }


def newest_epoch_checkpoint(folder: str | os.PathLike[str]) -> Path | None:
    """The ``epoch_N.pt`` of ``folder`` with the largest ``N``, or None when it has none."""
    checkpoints = epoch_checkpoints(folder)
    return checkpoints[max(checkpoints)] if checkpoints else None


def require_file(path: str | os.PathLike[str], what: str, fix: str) -> Path:
    """``path`` as a ``Path`` if it is a file; else ``FileNotFoundError`` or, for a folder,
    ``IsADirectoryError`` saying what it is, with ``fix``."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{what} {path} is a folder, not a file; {fix}")
    if not path.is_file():
        raise FileNotFoundError(f"{what} {path} does not exist; {fix}")
    return path


def read_json(path: str | os.PathLike[str], what: str = "JSON file") -> Any:
    """The JSON value of the file ``path``; bad JSON is a ``ValueError`` naming the file."""
    path = require_file(path, what, "give the path of a JSON file.")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(
            f"{what} {path} is not valid JSON ({error}); fix or replace it."
        ) from error


def _load_tensors(path: Path) -> Any:
    return torch.load(path, map_location="cpu", weights_only=True)


def load_torch_file(
    path: str | os.PathLike[str],
    what: str = "checkpoint",
    read: Callable[[Path], Any] = _load_tensors,
) -> Any:
    """``read(path)``, by default ``torch.load`` of tensors only (no code run), with a one-line
    ``ValueError`` naming the file and what is wrong with it when it is empty, cut short,
    corrupt, not a ``torch.save`` file or holds more than tensors."""
    path = require_file(path, what, "give the path of a checkpoint file.")
    fix = "give another checkpoint (e.g. an earlier epoch_N.pt of the run)."
    if path.stat().st_size == 0:
        raise ValueError(f"{what} {path} is empty (0 bytes): a save that never finished; {fix}")
    try:
        return read(path)
    except (pickle.UnpicklingError, IndexError, KeyError, TypeError) as error:
        # garbage fails the unpickler in several ways; the message of a refused pickle advises
        # weights_only=False, i.e. running the file's code: never pass that on
        raise ValueError(
            f"{what} {path} is not a checkpoint of tensors (not a torch.save file, or it holds "
            f"objects that would have to run code to load); {fix}"
        ) from error
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError) as error:
        detail = str(error).split(". ")[0] if str(error) else type(error).__name__
        if "weights_only" in detail:
            detail = type(error).__name__
        raise ValueError(
            f"{what} {path} cannot be read, it is cut short or corrupt ({detail}); {fix}"
        ) from error
