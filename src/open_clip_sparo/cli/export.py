"""``sparo export``: a checkpoint or training run folder to OpenCLIP's ``local-dir:`` layout.

The folder (``open_clip_config.json`` + ``open_clip_model.safetensors``) loads with
``open_clip.create_model_and_transforms('local-dir:DIR')`` once ``open_clip_sparo`` is imported.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..io.checkpoint import CONFIG_NAME, WEIGHTS_NAME, save_pretrained
from ..io.loading import load_model
from ..util.files import check_new_files


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sparo export", description="Write a SPARO model in OpenCLIP's local-dir: layout."
    )
    parser.add_argument("--model", required=True, help="registered name or training run folder")
    parser.add_argument(
        "--pretrained",
        default="",
        help="checkpoint file (required for a name; for a run folder, default: newest epoch)",
    )
    parser.add_argument("--out", required=True, help="folder to write")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing export")
    return parser


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    if not args.overwrite:  # before the model loads: the folder's files are new and writable
        check_new_files(
            [Path(args.out) / CONFIG_NAME, Path(args.out) / WEIGHTS_NAME],
            "choose another --out, or pass --overwrite to replace them (nothing was written).",
        )
    loaded = load_model(args.model, args.pretrained)
    if not hasattr(loaded.model, "sparo_cfg"):
        raise ValueError(f"{args.model} is not a SPARO model; sparo export writes SPARO models.")
    out = save_pretrained(loaded.model, Path(args.out), overwrite=args.overwrite)
    print(f"wrote {out}; load it with --model local-dir:{out}")
    return 0
