"""``sparo export``: a checkpoint or training run folder to OpenCLIP's ``local-dir:`` layout, or
with ``--hub REPO_ID`` to the Hugging Face Hub.

The folder (``open_clip_config.json`` + ``open_clip_model.safetensors``) loads with
``open_clip.create_model_and_transforms('local-dir:DIR')`` where open_clip_sparo is installed.
``--hub`` adds a model card (``README.md``) and pushes the folder, which then loads with
``create_model_and_transforms('hf-hub:REPO_ID')``; ``--dry-run`` writes the folder only.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..io.checkpoint import CONFIG_NAME, WEIGHTS_NAME, save_pretrained
from ..io.hub import CARD_NAME, push, read_metrics, run_params, write_hub_folder
from ..io.loading import load_model
from ..util.files import check_new_files


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sparo export",
        description="Write a SPARO model in OpenCLIP's local-dir: layout, or publish it on the "
        "Hugging Face Hub (--hub).",
    )
    parser.add_argument("--model", required=True, help="registered name or training run folder")
    parser.add_argument(
        "--pretrained",
        default="",
        help="checkpoint file (required for a name; for a run folder, default: newest epoch)",
    )
    parser.add_argument("--out", required=True, help="folder to write")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing export")
    parser.add_argument(
        "--hub",
        metavar="REPO_ID",
        help="also write a model card and push the folder to this Hub model repository",
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="with --hub: write the folder, do not push it"
    )
    parser.add_argument(
        "--metrics",
        nargs="+",
        default=[],
        metavar="RESULT",
        help="with --hub: result JSONs of `sparo eval` / `clip_benchmark eval` for the card",
    )
    return parser


def main(argv: list[str]) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.hub and (args.dry_run or args.metrics):
        parser.error("--dry-run and --metrics go with --hub REPO_ID.")
    out = Path(args.out)
    files = [out / CONFIG_NAME, out / WEIGHTS_NAME] + ([out / CARD_NAME] if args.hub else [])
    if not args.overwrite:  # before the model loads: the folder's files are new and writable
        fix = "choose another --out, or pass --overwrite to replace them (nothing was written)."
        check_new_files(files, fix)
    results = read_metrics(args.metrics)
    loaded = load_model(args.model, args.pretrained)
    if not hasattr(loaded.model, "sparo_cfg"):
        raise ValueError(f"{args.model} is not a SPARO model; sparo export writes SPARO models.")
    if not args.hub:
        save_pretrained(loaded.model, out, overwrite=args.overwrite)
        print(f"wrote {out}; load it with --model local-dir:{out}")
        return 0
    training = run_params(Path(args.model)) if Path(args.model).is_dir() else {}
    write_hub_folder(
        out, args.hub, loaded.model_name, loaded, training, results, overwrite=args.overwrite
    )
    if args.dry_run:
        print(f"wrote {out} (dry run, not pushed); it loads as hf-hub:{args.hub} once pushed")
        return 0
    print(f"pushed {out} to {push(out, args.hub)}; load it with hf-hub:{args.hub}")
    return 0
