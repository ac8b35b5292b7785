"""FLOPs per training sample of the fine-tuning recipe against a from-scratch SPARO run.

A training step (forward, ``ClipLoss``, backward) of ``sparo-X`` counted by the benchmarks' FLOP
counter: with both towers locked but their read-outs (stage 1: ``--lock-image
--lock-image-unlocked-groups 1 --lock-text --lock-text-unlocked-layers 1``), and with nothing
locked (stage 2, and every step of a run from random weights), per sample, and their ratio.

    python -m benchmarks.finetune_flops [--models sparo-ViT-B-32 sparo-ViT-B-16] [--batch 8]
"""

from __future__ import annotations

import argparse

import open_clip
import torch

from benchmarks.common import count_flops
from benchmarks.models import make_batch
from benchmarks.train_step import make_train_step

DEFAULT_MODELS = ("sparo-ViT-B-32", "sparo-ViT-B-16")


def step_flops(model: torch.nn.Module, name: str, batch: int) -> int:
    """FLOPs of one fp32 training step on CPU at ``batch``."""
    images, text = make_batch(model, name, batch, torch.device("cpu"))
    return count_flops(make_train_step(model, images, text, torch.device("cpu"), "fp32"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=list(DEFAULT_MODELS))
    parser.add_argument("--batch", type=int, default=8)
    args = parser.parse_args(argv)
    print(f"{'model':<24}{'stage 1 GFLOP/sample':>22}{'full GFLOP/sample':>20}{'ratio':>8}")
    for name in args.models:
        torch.manual_seed(0)
        model = open_clip.create_model(name)
        full = step_flops(model, name, args.batch) / args.batch
        model.lock_image_tower(unlocked_groups=1)  # the read-out is the last group
        model.lock_text_tower(unlocked_layers=1)
        stage_1 = step_flops(model, name, args.batch) / args.batch
        print(f"{name:<24}{stage_1 / 1e9:>22.2f}{full / 1e9:>20.2f}{stage_1 / full:>8.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
