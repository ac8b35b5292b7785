"""The ``sparo`` command line: one subcommand per job, each in its own module."""

from __future__ import annotations

import importlib
import os
import sys

# subcommand -> (module with a `main(argv) -> int`, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "eval": (
        "open_clip_sparo.evaluation",
        "CLIP_benchmark evaluation, optionally on a slot subset",
    ),
    "select": ("open_clip_sparo.concept_selection", "choose slots that improve a task"),
    "visualize": ("open_clip_sparo.visualize", "per-slot attention pictures for images+captions"),
    "export": ("open_clip_sparo.export", "checkpoint or run folder -> OpenCLIP local-dir"),
    "init-from-clip": ("open_clip_sparo.conversion", "plain OpenCLIP checkpoint -> SPARO start"),
    "generate": ("open_clip_sparo.generate", "write the synthetic world's shards and eval sets"),
    "demo": ("open_clip_sparo.demo", "the whole pipeline on the synthetic world, CLIP vs SPARO"),
    "demo-dino": (
        "open_clip_sparo.dino.demo",
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


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"sparo: unknown command {command!r}\n\n{usage()}", file=sys.stderr)
        return 2
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    module = importlib.import_module(COMMANDS[command][0])
    try:
        return module.main(rest)
    except (ValueError, FileExistsError, FileNotFoundError) as error:
        print(f"sparo {command}: error: {error}", file=sys.stderr)
        return 1
