"""The model pairs the model benchmarks compare: a SPARO model and the OpenCLIP one it replaces."""

from __future__ import annotations

import argparse

import open_clip
import torch

import open_clip_sparo  # noqa: F401  (registers the sparo-* model configs)

DEFAULT_PAIRS = ("sparo-ViT-B-16:ViT-B-16", "sparo-ViT-B-32:ViT-B-32")
CAPTIONS = (
    "a photo of a dog running on the beach",
    "two people riding bicycles through a busy city street at night",
    "a bowl of fruit",
    "an aerial view of a river winding through green hills and small villages",
)


def parse_pair(text: str) -> tuple[str, str]:
    """``sparo-X:X`` -> ``("sparo-X", "X")``."""
    names = tuple(text.split(":"))
    if len(names) != 2 or not all(names):
        raise argparse.ArgumentTypeError(f"{text!r} is not a pair MODEL:BASELINE.")
    return names


def add_model_args(parser: argparse.ArgumentParser, cuda_batch: int) -> None:
    parser.add_argument(
        "--pairs",
        nargs="+",
        type=parse_pair,
        default=[parse_pair(p) for p in DEFAULT_PAIRS],
        help=f"MODEL:BASELINE pairs (default: {' '.join(DEFAULT_PAIRS)})",
    )
    parser.add_argument(
        "--batch", type=int, help=f"batch size (default: 8 on CPU, {cuda_batch} on CUDA)"
    )


def batch_size(args: argparse.Namespace, cuda_batch: int) -> int:
    """``--batch``, else 8 on CPU and ``cuda_batch`` on CUDA."""
    return args.batch or (8 if args.device.type == "cpu" else cuda_batch)


def build_pair(pair: tuple[str, str], device: torch.device) -> dict[str, torch.nn.Module]:
    """Both models, randomly initialised from the same seed, as OpenCLIP's factory builds them."""
    models = {}
    for name in pair:
        torch.manual_seed(0)
        models[name] = open_clip.create_model(name, device=device)
    sizes = {name: (m.visual.image_size, m.context_length) for name, m in models.items()}
    if len(set(sizes.values())) > 1:
        raise SystemExit(
            f"--pairs {':'.join(pair)}: the models take different inputs (image size, context "
            f"length) {sizes}; pair models with the same inputs."
        )
    return models


def make_batch(
    model: torch.nn.Module, name: str, batch: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random images at the model's input size and tokenized captions of varied length."""
    height, width = model.visual.image_size
    images = torch.randn(batch, 3, height, width, generator=torch.Generator().manual_seed(0))
    captions = [CAPTIONS[i % len(CAPTIONS)] for i in range(batch)]
    text = open_clip.get_tokenizer(name)(captions)
    return images.to(device), text.to(device)
