"""Writing files without losing what is there (one atomic writer, one no-overwrite rule, one
finder of a run's newest ``epoch_N.pt``), and the one reader of checkpoints, which never runs a
file's code (:func:`load_torch_file`, :func:`read_state_dict`).

Every file this project writes (checkpoints, exports, results, reports) goes through
:func:`atomic_write`, so a reader or a killed process only ever sees the old content or the
complete new one; files that must not replace earlier work are written with ``overwrite=False``
or checked first with :func:`refuse_existing`.
"""

from __future__ import annotations

import errno
import json
import os
import pickle
import re
import shutil
import struct
import tempfile
import warnings
import zipfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO, Any

import torch

from .errors import DiskFullError, dangling_link_message, unusable_path_message

PARTIAL_SUFFIX = ".partial"  # not ``.pt``: a resume never considers these files
_EPOCH_CHECKPOINT = re.compile(r"epoch_(\d+)\.pt")
_ZIP_ENTRY = b"PK\x03\x04"  # how a zip file starts, and how PyTorch tells it from its legacy format


def refuse_existing(paths: Iterable[str | os.PathLike[str]], fix: str) -> None:
    """Raise ``FileExistsError`` naming every path of ``paths`` that exists, and ``fix``."""
    existing = [str(p) for p in paths if Path(p).exists()]
    if existing:
        raise FileExistsError(f"{existing} already exist; {fix}")


def atomic_write(
    path: str | os.PathLike[str],
    write: Callable[[IO[bytes]], Any],
    overwrite: bool = True,
    size: int | None = None,
) -> None:
    """Write ``path`` with ``write(file)`` so that ``path`` is only ever absent, its previous
    content or the complete new content.

    The data goes to ``<path>.partial`` in the same folder, is flushed to disk, then renamed over
    ``path`` (atomic on POSIX file systems). A ``.partial`` file left by a killed process is
    overwritten by the next write of the same path. With ``overwrite=False`` an existing
    ``path`` is refused before anything is written. A full disk (or quota) ends in one
    :class:`DiskFullError` naming the folder and the space needed (``size`` bytes, the expected
    size of the file, where the caller knows it).
    """
    path = Path(path)
    if not overwrite:
        refuse_existing([path], "choose another path or remove it (nothing was written).")
    if (link := dangling_link_message(path)) is not None:
        raise FileNotFoundError(f"{path} cannot be written: {link} (nothing was written).")
    partial = path.with_name(path.name + PARTIAL_SUFFIX)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        file = partial.open("wb")
    except OSError as error:
        message = unusable_path_message(error, str(path))
        if message is None:
            raise
        raise PermissionError(f"{message} (nothing was written).") from None
    written = 0
    try:
        with file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
    except BaseException as error:
        if partial.exists():
            written = partial.stat().st_size
        partial.unlink(missing_ok=True)
        if _is_disk_full(error):
            raise _disk_full(path, max(size or 0, written), exact=size is not None) from None
        raise
    os.replace(partial, path)
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)  # make the rename itself durable
    finally:
        os.close(folder)


def _is_disk_full(error: BaseException) -> bool:
    """Whether ``error``, or an error it was raised from (PyTorch wraps the writer's ``OSError``
    in a ``RuntimeError``), is a full disk or quota."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _disk_full(path: Path, needed: int, exact: bool) -> DiskFullError:
    folder = path.parent.absolute()
    free = shutil.disk_usage(folder).free
    amount = f"about {_megabytes(needed)}" if exact else f"more than {_megabytes(needed)}"
    return DiskFullError(
        f"no space left to write {path.name} in {folder}: it needs {amount} and "
        f"{_megabytes(free)} are free there; free some space or write to another folder "
        f"(nothing was replaced: {path} is as it was)",
    )


def _megabytes(size: int) -> str:
    return f"{size / 2**20:.1f} MB"


def _tensor_bytes(obj: Any) -> int:
    """The bytes of the tensors in ``obj`` (nested dicts, lists, tuples): about the size of its
    ``torch.save`` file."""
    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, dict):
        return sum(_tensor_bytes(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(_tensor_bytes(v) for v in obj)
    return 0


def write_text(path: str | os.PathLike[str], text: str, overwrite: bool = True) -> None:
    """:func:`atomic_write` of UTF-8 text."""
    data = text.encode()
    atomic_write(path, lambda file: file.write(data), overwrite=overwrite, size=len(data))


def write_json(path: str | os.PathLike[str], obj: Any, overwrite: bool = True) -> None:
    """:func:`atomic_write` of ``obj`` as indented JSON."""
    write_text(path, json.dumps(obj, indent=2) + "\n", overwrite=overwrite)


def atomic_save(obj: Any, f: Any, *args: Any, **kwargs: Any) -> None:
    """``torch.save``, writing to a file name atomically (:func:`atomic_write`); open files and
    buffers are written as ``torch.save`` writes them."""
    if isinstance(f, (str, os.PathLike)):
        atomic_write(
            f,
            lambda file: torch.serialization.save(obj, file, *args, **kwargs),
            size=_tensor_bytes(obj),
        )
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


class UnreadableFileError(ValueError):
    """A file that exists but cannot be read as what it should be (bad JSON, a corrupt
    checkpoint): an expected failure, reported with the file's name."""


def describe_path(path: str | os.PathLike[str]) -> str:
    """What ``path`` is, for messages: ``a folder``, ``an empty file``, ``missing``, ..."""
    path = Path(path)
    if path.is_dir():
        return "a folder"
    if path.is_file():
        return "an empty file" if path.stat().st_size == 0 else "a file"
    return "something else than a file or folder" if path.exists() else "missing"


def require_file(path: str | os.PathLike[str], what: str, fix: str = "") -> Path:
    """``path`` if it is a file; otherwise an error saying what ``path`` is instead (a
    ``FileNotFoundError``, or ``IsADirectoryError`` for a folder), with ``fix``."""
    path = Path(path)
    if path.is_file():
        return path
    kind = describe_path(path)
    fix = f"; {fix}" if fix else "."
    if kind == "missing":
        raise FileNotFoundError(f"{what} {path} does not exist{fix}")
    error = IsADirectoryError if kind == "a folder" else FileNotFoundError
    raise error(f"{what} {path} is {kind}, not a file{fix}")


def read_json(path: str | os.PathLike[str], what: str = "JSON file") -> Any:
    """The JSON content of ``path``; errors name the file and say what is wrong with it."""
    path = require_file(path, what)
    try:
        text = path.read_text()
    except UnicodeDecodeError as error:
        raise UnreadableFileError(
            f"{what} {path} is not text ({error}); it must hold JSON."
        ) from None
    if not text.strip():
        raise UnreadableFileError(f"{what} {path} is empty; it must hold JSON.")
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise UnreadableFileError(
            f"{what} {path} is not valid JSON ({error.msg} at line {error.lineno}, column "
            f"{error.colno}); fix or replace it."
        ) from None


def _is_torch_zip_file(path: str | os.PathLike[str]) -> bool:
    """Whether PyTorch reads ``path`` as a zip file (``torch.save``'s format since PyTorch 1.6,
    and TorchScript's), not as its legacy format: the file starts with a zip entry. Python's
    ``zipfile.is_zipfile`` also accepts a zip appended to other bytes, such as a legacy-format
    pickle, which ``torch.load`` would unpickle. False when it cannot be read, as for
    ``zipfile.is_zipfile``."""
    try:
        with open(path, "rb") as file:
            return file.read(len(_ZIP_ENTRY)) == _ZIP_ENTRY and zipfile.is_zipfile(file)
    except OSError:
        return False


def is_torchscript_archive(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a TorchScript archive (``torch.jit.save``: a zip file whose folder
    holds ``constants.pkl``), which ``torch.jit.load`` reads, not :func:`load_torch_file`."""
    if not _is_torch_zip_file(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(
            len(parts := name.split("/")) == 2 and parts[1] == "constants.pkl"
            for name in archive.namelist()
        )


def load_torch_file(
    path: str | os.PathLike[str],
    what: str = "checkpoint",
    fix: str = "give another checkpoint (e.g. an earlier epoch_N.pt of the run).",
    mmap: bool = False,
    stream: IO[bytes] | None = None,
) -> Any:
    """The one reader of ``torch.save`` files: ``torch.load`` with ``weights_only=True`` passed
    explicitly, so no code in the file ever runs, not even with PyTorch's
    ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD`` set. Memory-mapped with ``mmap`` where the format
    allows; read from the open ``stream`` instead (a remote file) when given, ``path`` then only
    naming it. Errors are one-line :class:`UnreadableFileError` naming the file when it is
    empty, cut short, corrupt, not a ``torch.save`` file, a TorchScript archive, or holds more
    than tensors."""
    if stream is None:
        path = require_file(path, what, fix)
        if path.stat().st_size == 0:
            raise UnreadableFileError(
                f"{what} {path} is empty (0 bytes): a save that never finished; {fix}"
            )
        mmap = mmap and _is_torch_zip_file(path)  # the legacy format cannot be mapped
    try:
        with warnings.catch_warnings():  # both cases end in this reader's own error below
            warnings.filterwarnings("ignore", "Detected pickle protocol", UserWarning)  # garbage
            warnings.filterwarnings("ignore", ".*looks like a TorchScript archive", UserWarning)
            return torch.load(
                path if stream is None else stream, map_location="cpu", weights_only=True, mmap=mmap
            )
    except (
        pickle.UnpicklingError,
        IndexError,
        KeyError,
        TypeError,
        AttributeError,
        ValueError,  # UnicodeDecodeError among them
        OverflowError,
        struct.error,
    ) as error:
        # garbage fails the unpickler in many ways; the message of a refused pickle advises
        # weights_only=False, i.e. running the file's code: never pass that on
        raise UnreadableFileError(
            f"{what} {path} is not a checkpoint of tensors (not a torch.save file, or it holds "
            f"objects that would have to run code to load); {fix}"
        ) from error
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError) as error:
        if stream is None and is_torchscript_archive(path):
            raise UnreadableFileError(
                f"{what} {path} is a TorchScript archive (torch.jit.save), a program whose code "
                f"runs as it loads, not a checkpoint of tensors; {fix}"
            ) from error
        detail = str(error).split(". ")[0] if str(error) else type(error).__name__
        if "weights_only" in detail:
            detail = type(error).__name__
        raise UnreadableFileError(
            f"{what} {path} cannot be read, it is cut short or corrupt ({detail}); {fix}"
        ) from error


def read_state_dict(
    path: str | os.PathLike[str],
    what: str = "the checkpoint",
    fix: str = "give another checkpoint.",
    lazy: bool = False,
) -> dict[str, torch.Tensor]:
    """The state dict of a weights file: a ``.safetensors`` file (which holds no code), or a
    ``torch.save`` file read with :func:`load_torch_file` holding a state dict, possibly under
    ``"state_dict"`` and with DistributedDataParallel's ``module.`` prefix (as open_clip_train
    saves it). Anything else is a one-line :class:`UnreadableFileError` naming the file.

    ``lazy`` is for checks before the real load: a ``torch.save`` file is memory-mapped, and of
    a safetensors file only the header is read (its tensors come back as ``meta`` tensors of
    the right shapes)."""
    path = require_file(path, what, fix)
    if path.suffix != ".safetensors":
        content = load_torch_file(path, what, fix=fix, mmap=lazy)
        return state_dict_of(content, f"{what} {path}", fix)
    from safetensors import safe_open

    if path.stat().st_size == 0:
        raise UnreadableFileError(f"{what} {path} is empty (0 bytes); {fix}")
    try:
        with safe_open(str(path), framework="pt") as file:
            content = {
                key: torch.empty(file.get_slice(key).get_shape(), device="meta")
                if lazy
                else file.get_tensor(key)
                for key in file.keys()  # noqa: SIM118 (safe_open is not iterable)
            }
    except Exception as error:  # safetensors raises several types for a broken file
        raise UnreadableFileError(
            f"{what} {path} cannot be read, it is cut short or corrupt "
            f"({type(error).__name__}); {fix}"
        ) from None
    return state_dict_of(content, f"{what} {path}", fix)


def state_dict_of(content: Any, what: str, fix: str) -> dict[str, torch.Tensor]:
    """The state dict a loaded checkpoint ``content`` holds (itself, or its ``"state_dict"``),
    without DistributedDataParallel's ``module.`` prefix; an :class:`UnreadableFileError`
    naming ``what`` when it is not a non-empty mapping of names to tensors."""
    state = content.get("state_dict", content) if isinstance(content, dict) else None
    if (
        not isinstance(state, dict)
        or not state
        or not all(isinstance(v, torch.Tensor) for v in state.values())
    ):
        raise UnreadableFileError(
            f"{what} holds no state dict (a mapping of names to tensors, possibly under "
            f"'state_dict'); found {type(content).__name__}. {fix}"
        )
    if all(key.startswith("module.") for key in state):
        state = {key[len("module.") :]: value for key, value in state.items()}
    return state


def check_checkpoint(path: str | os.PathLike[str], fix: str = "") -> Path:
    """Fail with one clear message unless ``path`` is a readable checkpoint holding tensors
    (:func:`read_state_dict`, lazily: cheap before the real load)."""
    read_state_dict(path, "the checkpoint", fix or "give another checkpoint.", lazy=True)
    return Path(path)


def check_new_files(paths: Iterable[str | os.PathLike[str]], fix: str) -> list[Path]:
    """Check, before any work, that every path of ``paths`` can be written as a new file:
    the paths are distinct, none exists, and each can be created (its nearest existing folder
    is a writable folder). The error names every offending path and ``fix``."""
    paths = [Path(p) for p in paths]
    resolved = [p.resolve() for p in paths]
    duplicates = sorted(
        {str(p) for p, r in zip(paths, resolved, strict=True) if resolved.count(r) > 1}
    )
    if duplicates:
        raise ValueError(f"{duplicates} would be written more than once; {fix}")
    refuse_existing(paths, fix)
    for path in paths:
        if (link := dangling_link_message(path)) is not None:
            raise FileNotFoundError(f"{path} cannot be written: {link}; {fix}")
        parent = path.absolute().parent
        while not parent.exists():
            parent = parent.parent
        if not parent.is_dir():
            raise NotADirectoryError(
                f"{path} cannot be written: {parent} is {describe_path(parent)}, not a folder; "
                f"{fix}"
            )
        try:  # a probe, not os.access: it also holds for root and read-only file systems
            tempfile.TemporaryFile(dir=parent).close()
        except OSError as error:
            raise PermissionError(
                f"{path} cannot be written: no file can be created in {parent} "
                f"({error.strerror}); {fix}"
            ) from None
    return paths
