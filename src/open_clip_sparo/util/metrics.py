"""The one top-k accuracy, shared by every evaluation (CLIP_benchmark's tasks, DINO's k-NN
and linear probe)."""

from __future__ import annotations

from collections.abc import Sequence

import torch


def topk_accuracy(
    logits: torch.Tensor, target: torch.Tensor, topk: Sequence[int] = (1,)
) -> list[float]:
    """Top-k accuracies (fractions) of ``(N, C)`` logits for integer targets ``(N,)``, as
    CLIP_benchmark's ``accuracy`` computes them (and safe with NumPy 2)."""
    top = logits.topk(max(topk), dim=1).indices  # (N, max k)
    hits = top == target.view(-1, 1)
    return [hits[:, :k].sum().item() / len(target) for k in topk]
