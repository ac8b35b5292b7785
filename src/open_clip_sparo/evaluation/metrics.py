"""The task metrics, computed as CLIP_benchmark computes them, from similarity scores."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..util.metrics import topk_accuracy


def classification_metrics(scores: torch.Tensor, targets: torch.Tensor) -> dict[str, float]:
    """``acc1``, ``acc5`` (NaN under 5 classes) and ``mean_per_class_recall`` of ``(I, C)``."""
    ks = (1, 5) if scores.shape[1] >= 5 else (1,)
    accuracies = topk_accuracy(scores, targets, ks)
    # mean over the classes present of their recall (sklearn's balanced accuracy)
    top1_hits = scores.topk(1, dim=1).indices[:, 0] == targets  # (I,)
    correct = torch.bincount(targets[top1_hits], minlength=scores.shape[1])
    total = torch.bincount(targets, minlength=scores.shape[1])
    present = total > 0
    return {
        "acc1": accuracies[0],
        "acc5": accuracies[1] if len(ks) > 1 else float("nan"),
        "mean_per_class_recall": (correct[present] / total[present]).double().mean().item(),
    }


def retrieval_metrics(
    scores: torch.Tensor, text_image: torch.Tensor, recall_k: Sequence[int] = (5,)
) -> dict[str, float]:
    """Recall@k of ``(T, I)`` text-image scores in both directions, as CLIP_benchmark's."""
    positives = torch.zeros_like(scores, dtype=torch.bool)
    positives[torch.arange(len(scores)), text_image] = True
    metrics = {}
    for k in recall_k:
        metrics[f"image_retrieval_recall@{k}"] = _any_positive_in_top(scores, positives, k)
        metrics[f"text_retrieval_recall@{k}"] = _any_positive_in_top(scores.T, positives.T, k)
    return metrics


def caption_selection_metrics(scores: torch.Tensor) -> dict[str, float]:
    """``image_acc``, ``text_acc`` and ``acc`` of ``(N, nim, nt)`` scores where image ``i``
    matches caption ``i``, as CLIP_benchmark's image-caption selection."""
    matched = min(scores.shape[1:])
    truth = torch.arange(matched)
    text_ok = (scores.argmax(dim=2)[:, :matched] == truth).all(dim=1)  # each image's caption
    image_ok = (scores.argmax(dim=1)[:, :matched] == truth).all(dim=1)  # each caption's image
    return {
        "image_acc": image_ok.double().mean().item(),
        "text_acc": text_ok.double().mean().item(),
        "acc": (image_ok & text_ok).double().mean().item(),
    }


def _any_positive_in_top(scores: torch.Tensor, positives: torch.Tensor, k: int) -> float:
    top = scores.topk(min(k, scores.shape[1]), dim=1).indices
    return positives.gather(1, top).any(dim=1).double().mean().item()
