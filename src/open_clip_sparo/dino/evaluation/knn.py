"""Weighted k-NN classification on frozen features, DINO's protocol (Caron et al., 2021, §4.1).

    python -m open_clip_sparo.dino.evaluation.knn --checkpoint RUN --train-data TRAIN --val-data VAL

Features are L2-normalised; each validation image takes its ``k`` nearest training images by
cosine similarity ``s``, and class ``c`` scores ``sum over those neighbours of class c of
exp(s / T)``; defaults k = 20, T = 0.07.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from .features import FrozenFeatures, accuracies, feature_parser, run_feature_command

log = logging.getLogger("open_clip_sparo.dino.evaluation.knn")


@torch.no_grad()
def knn_scores(
    train: torch.Tensor,
    train_labels: torch.Tensor,
    queries: torch.Tensor,
    num_classes: int,
    k: int = 20,
    temperature: float = 0.07,
    chunk_size: int = 1024,
    bank_chunk_size: int = 65536,
) -> torch.Tensor:
    """Class scores ``(Q, num_classes)`` of ``queries`` ``(Q, D)`` by weighted k-NN over
    ``train`` ``(N, D)``; the features are normalised here.

    Memory stays bounded whatever ``N``: queries go ``chunk_size`` at a time, the memory bank
    ``bank_chunk_size`` rows at a time (normalised as read), and each query keeps a running
    top ``k`` over the bank's chunks; beyond the inputs, a step holds
    ``chunk_size x bank_chunk_size`` similarities.
    """
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}.")
    scores = []
    for chunk in F.normalize(queries.float(), dim=-1).split(chunk_size):
        nearest = torch.empty(len(chunk), 0, device=chunk.device)  # (q, <= k)
        neighbours = torch.empty(len(chunk), 0, dtype=torch.long, device=chunk.device)
        for start in range(0, len(train), bank_chunk_size):
            bank = F.normalize(train[start : start + bank_chunk_size].float(), dim=-1)
            bank_nearest, bank_rows = (chunk @ bank.T).topk(min(k, len(bank)), dim=1)
            nearest = torch.cat([nearest, bank_nearest], dim=1)  # (q, <= 2k)
            candidates = torch.cat([neighbours, bank_rows + start], dim=1)
            nearest, best = nearest.topk(min(k, nearest.shape[1]), dim=1)  # (q, <= k)
            neighbours = candidates.gather(1, best)
        scores.append(weighted_vote(nearest, neighbours, train_labels, num_classes, temperature))
    return torch.cat(scores)


def knn_vote(
    similarity: torch.Tensor,
    train_labels: torch.Tensor,
    num_classes: int,
    k: int = 20,
    temperature: float = 0.07,
) -> torch.Tensor:
    """Class scores ``(Q, num_classes)`` from cosine similarities ``(Q, N)`` of queries to the
    ``N`` training features: each class sums ``exp(s / T)`` over the ``k`` nearest."""
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}.")
    nearest, neighbours = similarity.topk(min(k, similarity.shape[1]), dim=1)  # (Q, k)
    return weighted_vote(nearest, neighbours, train_labels, num_classes, temperature)


def weighted_vote(
    nearest: torch.Tensor,
    neighbours: torch.Tensor,
    train_labels: torch.Tensor,
    num_classes: int,
    temperature: float,
) -> torch.Tensor:
    """DINO's vote: class ``c`` sums ``exp(s / T)`` over the neighbours of class ``c``, from
    the similarities ``nearest`` ``(Q, k)`` of the training rows ``neighbours`` ``(Q, k)``."""
    votes = torch.zeros(len(nearest), num_classes, device=nearest.device)
    return votes.scatter_add_(1, train_labels[neighbours], (nearest / temperature).exp())


def effective_k(k: int, memory: int) -> int:
    """``k``, or the size of the memory set when it has fewer images (with a warning)."""
    if k > memory:
        log.warning(
            f"--k {k} is more than the {memory} images of the memory set (--train-data): "
            f"k-NN uses all {memory}, and reports them as k={memory}."
        )
    return min(k, memory)


def knn_accuracies(
    features: FrozenFeatures, ks: Sequence[int] = (20,), temperature: float = 0.07
) -> dict[str, dict[str, float]]:
    """Validation accuracies (percent) of the weighted k-NN classifier, per ``k``; a ``k``
    above the memory set's size is reported as that size (:func:`effective_k`)."""
    ks = sorted({effective_k(k, len(features.train)) for k in ks})
    return {
        str(k): accuracies(
            knn_scores(
                features.train,
                features.train_labels,
                features.val,
                features.num_classes,
                k,
                temperature,
            ),
            features.val_labels,
        )
        for k in ks
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = feature_parser("open_clip_sparo.dino.evaluation.knn", __doc__)
    parser.add_argument("--k", type=int, nargs="+", default=[20], help="neighbour counts")
    parser.add_argument("--temperature", type=float, default=0.07)

    def evaluate(args: argparse.Namespace, features: FrozenFeatures) -> dict[str, Any]:
        knn = knn_accuracies(features, args.k, args.temperature)
        return {"temperature": args.temperature, "knn": knn}

    return run_feature_command(parser, argv, evaluate)


if __name__ == "__main__":
    sys.exit(main())
