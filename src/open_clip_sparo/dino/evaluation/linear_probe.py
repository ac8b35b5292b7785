"""Linear probe on frozen features.

    python -m open_clip_sparo.dino.evaluation.linear_probe --checkpoint RUN \\
        --train-data TRAIN --val-data VAL

This project's protocol (DINO trains its linear layer on augmented crops; here the features are
extracted once, from the centre crop): the features are standardised with the training set's
per-dimension mean and variance (a BatchNorm without affine parameters, as MAE's linear probe),
then one linear layer (initialised N(0, 0.01), bias 0, as DINO) is trained with SGD (momentum
0.9, no weight decay) and a cosine learning rate, and evaluated on the validation set.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from .features import FrozenFeatures, accuracies, feature_parser, run_feature_command

log = logging.getLogger("open_clip_sparo.dino.evaluation.linear_probe")


def train_linear_probe(
    train: torch.Tensor,
    train_labels: torch.Tensor,
    num_classes: int,
    epochs: int = 100,
    batch_size: int = 256,
    lr: float = 0.1,
    seed: int = 0,
) -> nn.Sequential:
    """A standardisation + linear classifier fitted on ``train`` ``(N, D)``; ``lr`` is the peak
    learning rate at a batch of 256 (scaled linearly with ``batch_size``). Fewer than 2
    training images are refused (their variance, which standardises, is undefined); fewer
    than ``num_classes`` get a warning."""
    if len(train) < 2:
        raise ValueError(
            f"the linear probe needs at least 2 training images (--train-data) to standardise "
            f"the features by their variance; it has {len(train)}. Give a larger training set."
        )
    if len(train) < num_classes:
        log.warning(
            f"the linear probe's training set (--train-data) has {len(train)} images for "
            f"{num_classes} classes: it cannot learn every class; its accuracy means little."
        )
    generator = torch.Generator(train.device).manual_seed(seed)
    norm = nn.BatchNorm1d(train.shape[1], affine=False).to(train.device).eval()
    linear = nn.Linear(train.shape[1], num_classes).to(train.device)
    with torch.no_grad():
        norm.running_mean.copy_(train.mean(dim=0))
        norm.running_var.copy_(train.var(dim=0))
        linear.weight.normal_(0.0, 0.01, generator=generator)
        linear.bias.zero_()
    optimizer = torch.optim.SGD(linear.parameters(), lr=lr * batch_size / 256, momentum=0.9)
    steps_per_epoch = math.ceil(len(train) / batch_size)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, epochs * steps_per_epoch)
    loss_fn = nn.CrossEntropyLoss()
    for _ in range(epochs):
        order = torch.randperm(len(train), generator=generator, device=train.device)
        for batch in order.split(batch_size):
            with torch.no_grad():
                inputs = norm(train[batch])  # (b, D) standardised
            loss = loss_fn(linear(inputs), train_labels[batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
    return nn.Sequential(norm, linear).eval()


def linear_probe_accuracies(
    features: FrozenFeatures,
    epochs: int = 100,
    batch_size: int = 256,
    lr: float = 0.1,
    seed: int = 0,
) -> dict[str, float]:
    """Validation accuracies (percent) of a linear probe fitted on the training features."""
    probe = train_linear_probe(
        features.train, features.train_labels, features.num_classes, epochs, batch_size, lr, seed
    )
    with torch.no_grad():
        return accuracies(probe(features.val), features.val_labels)


def main(argv: Sequence[str] | None = None) -> int:
    parser = feature_parser("open_clip_sparo.dino.evaluation.linear_probe", __doc__)
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--lr", type=float, default=0.1, help="peak lr at a batch of 256")
    parser.add_argument("--probe-batch-size", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)

    def evaluate(args: argparse.Namespace, features: FrozenFeatures) -> dict[str, Any]:
        batch_size = args.probe_batch_size
        accuracy = linear_probe_accuracies(features, args.epochs, batch_size, args.lr, args.seed)
        settings = {"epochs": args.epochs, "lr": args.lr, "batch_size": batch_size}
        return {"linear_probe": {**accuracy, **settings}}

    return run_feature_command(parser, argv, evaluate)


if __name__ == "__main__":
    sys.exit(main())
