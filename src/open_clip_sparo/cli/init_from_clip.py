"""``sparo init-from-clip``: a plain OpenCLIP CLIP checkpoint as the start of its SPARO twin."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from pathlib import Path

import open_clip
import torch

from ..derive import baseline_name, missing_model_error
from ..io.init_from_clip import init_from_clip, load_clip_state_dict
from ..io.pretrained import resolve_pretrained
from ..openclip_internals import model_configs
from ..util.files import atomic_write


def save_state_dict(state_dict: Mapping[str, torch.Tensor], path: Path) -> None:
    """Write ``state_dict`` to a new file (``.safetensors`` by suffix, else ``torch.save``);
    fails if ``path`` exists."""
    tensors = {k: v.detach().contiguous().cpu() for k, v in state_dict.items()}
    if path.suffix == ".safetensors":
        from safetensors.torch import save

        atomic_write(path, lambda file: file.write(save(tensors)), overwrite=False)
    else:
        atomic_write(path, lambda file: torch.save(tensors, file), overwrite=False)


def main(argv: list[str] | None = None) -> int:
    """``sparo init-from-clip``: write a SPARO checkpoint started from a plain CLIP one."""
    parser = argparse.ArgumentParser(
        prog="sparo init-from-clip",
        description="Convert a plain OpenCLIP CLIP checkpoint into the starting checkpoint of its "
        "SPARO twin (backbone copied, removed blocks and projections dropped, read-outs fresh).",
    )
    parser.add_argument("--model", required=True, help="SPARO model name, e.g. sparo-ViT-B-16")
    parser.add_argument(
        "--clip-checkpoint",
        required=True,
        help="plain OpenCLIP checkpoint of the baseline X of sparo-X: a path, a pretrained tag "
        "of X (open_clip.list_pretrained_tags_by_model) or hf-hub:ORG/NAME, found in the "
        "Hugging Face hub cache as OpenCLIP's pretrained= finds it",
    )
    parser.add_argument(
        "--out",
        required=True,
        type=Path,
        help="new checkpoint file (.pt, or .safetensors); for OpenCLIP's --pretrained",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the fresh read-outs")
    args = parser.parse_args(argv)

    if args.out.exists():
        parser.error(f"{args.out} already exists; choose another --out (nothing was written).")
    if args.model not in open_clip.list_models():
        parser.error(
            missing_model_error(args.model, model_configs())
            or f"unknown model {args.model!r}; give sparo-<name> for an OpenCLIP model <name>."
        )
    checkpoint = resolve_pretrained(baseline_name(args.model), args.clip_checkpoint)
    torch.manual_seed(args.seed)
    model = open_clip.create_model(args.model)
    report = init_from_clip(model, load_clip_state_dict(checkpoint))
    save_state_dict(model.state_dict(), args.out)
    print(report.table())
    print(
        f"wrote {args.out}; train or evaluate it with --model {args.model} --pretrained {args.out}"
    )
    return 0
