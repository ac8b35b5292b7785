"""``sparo convert-fork``: a model trained with the authors' own code (``ankitkv/sparo-clip``)
-> OpenCLIP's ``local-dir:`` layout, which ``open_clip.create_model('local-dir:DIR')`` and every
``sparo`` command read."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..fork.conversion import convert_fork


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sparo convert-fork",
        description="Convert a checkpoint of the authors' fork (ankitkv/sparo-clip) and its model "
        "config to OpenCLIP's local-dir: layout (docs/fork.md).",
    )
    parser.add_argument("--config", required=True, help="the fork's model config JSON")
    parser.add_argument("--checkpoint", required=True, help="the fork's checkpoint (epoch_N.pt)")
    parser.add_argument("--out", required=True, type=Path, help="new folder to write")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    fork = convert_fork(args.config, args.checkpoint, args.out)
    for note in fork.notes:
        print(f"note: {note}")
    print(f"wrote {args.out}; load it with --model local-dir:{args.out}")
    return 0
