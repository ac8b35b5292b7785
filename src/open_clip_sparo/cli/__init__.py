"""The ``sparo`` command line: one subcommand per job, each in its own module."""

from __future__ import annotations

import importlib
import logging
import os
import sys
from typing import TextIO

from ..util.errors import run_entry_point

# subcommand -> (module with a `main(argv) -> int`, one-line help); named by string so that
# `sparo --help` imports nothing, and so that the demos, which script these commands, sit above
# the command line without an import cycle
COMMANDS: dict[str, tuple[str, str]] = {
    "eval": ("open_clip_sparo.cli.eval", "CLIP_benchmark evaluation, optionally on a slot subset"),
    "select": ("open_clip_sparo.cli.select", "choose slots that improve a task"),
    "visualize": ("open_clip_sparo.cli.visualize", "per-slot attention pictures for pairs"),
    "export": ("open_clip_sparo.cli.export", "checkpoint or run folder -> OpenCLIP local-dir"),
    "init-from-clip": (
        "open_clip_sparo.cli.init_from_clip",
        "plain OpenCLIP checkpoint -> SPARO start",
    ),
    "convert-fork": ("open_clip_sparo.cli.convert_fork", "authors' fork checkpoint -> local-dir"),
    "generate": (
        "open_clip_sparo.cli.generate",
        "write the synthetic world's shards and eval sets",
    ),
    "demo": (
        "open_clip_sparo.demos.clip",
        "the whole pipeline on the synthetic world, CLIP vs SPARO",
    ),
    "demo-dino": (
        "open_clip_sparo.demos.dino",
        "DINO on the synthetic world: class token vs SPARO, k-NN and linear probe",
    ),
}


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = [f"  {name:<{width}}  {help_}" for name, (_, help_) in COMMANDS.items()]
    return (
        "usage: sparo <command> [arguments]\n\ncommands:\n"
        + "\n".join(lines)
        + ("\n\n`sparo <command> --help` describes a command's arguments.")
    )


class _StderrHandler(logging.StreamHandler):
    """Log lines to whatever ``sys.stderr`` is when each is written."""

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, _: object) -> None:
        pass


def show_library_notes() -> None:
    """The note that a checkpoint of the authors' fork was converted while loading (an INFO
    log line, which Python's logging would not show) on stderr."""
    library = logging.getLogger("open_clip_sparo.fork")
    if not any(isinstance(h, _StderrHandler) for h in library.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        library.addHandler(handler)
    library.setLevel(logging.INFO)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv:  # a command is required: usage on stderr, argparse's status for bad usage
        print(usage(), file=sys.stderr)
        return 2
    if argv[0] in ("-h", "--help"):
        print(usage())
        return 0
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"sparo: unknown command {command!r}\n\n{usage()}", file=sys.stderr)
        return 2
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    show_library_notes()
    module = importlib.import_module(COMMANDS[command][0])
    # imported here, not above, so that `sparo --help` imports nothing
    from ..util.wds_decode import pickles_undecoded

    with pickles_undecoded():  # CLIP_benchmark's WebDataset loader never unpickles data files
        return run_entry_point(f"sparo {command}", module.main, rest)
