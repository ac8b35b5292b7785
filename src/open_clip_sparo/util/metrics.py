"""The one top-k accuracy, shared by every evaluation (CLIP_benchmark's tasks, DINO's k-NN
and linear probe), and the one rule for doubting a fitted classifier's score (shared or too few
items)."""

from __future__ import annotations

from collections.abc import Sequence

import torch


def topk_hits(
    logits: torch.Tensor, target: torch.Tensor, topk: Sequence[int] = (1,)
) -> torch.Tensor:
    """``(N, len(topk))`` bool: whether each row's target is among the k highest of its ``(N, C)``
    logits, for each k (one ``topk`` of the largest k, as CLIP_benchmark's ``accuracy``)."""
    top = logits.topk(max(topk), dim=1).indices  # (N, max k)
    hits = top == target.view(-1, 1)
    return torch.stack([hits[:, :k].any(dim=1) for k in topk], dim=1)


def topk_accuracy(
    logits: torch.Tensor, target: torch.Tensor, topk: Sequence[int] = (1,)
) -> list[float]:
    """Top-k accuracies (fractions) of ``(N, C)`` logits for integer targets ``(N,)``, as
    CLIP_benchmark's ``accuracy`` computes them (and safe with NumPy 2)."""
    return [hits.sum().item() / len(target) for hits in topk_hits(logits, target, topk).T]


MIN_SPLIT_ITEMS = 50  # fewer fitting or scoring items than this: a score that means little
_KEY_DIMS, _KEY_STEP = 32, 1e-3  # items compared on their first 32 normalised dims, to 1e-3


def shared_items(fit: torch.Tensor, score: torch.Tensor) -> int:
    """How many rows of ``score`` ``(M, D)`` have the features of a row of ``fit`` ``(N, D)``
    (compared after L2 normalisation, to 1e-3, on the first dims): an image in both sets."""

    def keys(features: torch.Tensor) -> list[bytes]:
        unit = torch.nn.functional.normalize(features[:, :_KEY_DIMS].float(), dim=1)
        return [row.tobytes() for row in torch.round(unit / _KEY_STEP).int().numpy()]

    fitted = set(keys(fit))
    return sum(key in fitted for key in keys(score))


def split_doubts(
    fit: torch.Tensor, score: torch.Tensor, fit_name: str, score_name: str
) -> list[str]:
    """Why a score of a classifier fitted on the features ``fit`` ``(N, D)`` and scored on
    ``score`` ``(M, D)`` may mislead, one sentence each: the two sets share items, or one has
    fewer than :data:`MIN_SPLIT_ITEMS`. ``fit_name``/``score_name`` say where each came from."""
    doubts = []
    shared = shared_items(fit, score)
    if shared:
        doubts.append(
            f"{shared} of the {len(score)} items of {score_name} are also in {fit_name} (the "
            "same images in both?): the score overstates the accuracy on unseen images"
        )
    if min(len(fit), len(score)) < MIN_SPLIT_ITEMS:
        doubts.append(
            f"{fit_name} has {len(fit)} items and {score_name} {len(score)}: with fewer than "
            f"{MIN_SPLIT_ITEMS} the score is mostly noise"
        )
    return doubts
