"""The task metrics, computed as CLIP_benchmark computes them, from similarity scores.

Accuracies and recalls are fractions of hits over rows (images, or texts for image retrieval),
so they can also be summed over chunks of rows: :func:`hit_rows` and :func:`row_hits`."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..util.metrics import topk_accuracy, topk_hits


def classification_metrics(scores: torch.Tensor, targets: torch.Tensor) -> dict[str, float]:
    """``acc1``, ``acc5`` (NaN under 5 classes) and ``mean_per_class_recall`` of ``(I, C)``."""
    ks = _classification_ks(scores.shape[1])
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
    metrics = {}
    texts, images = (torch.arange(n, device=scores.device) for n in scores.shape)
    for k in recall_k:
        for name, rows, row_scores in (("image", texts, scores), ("text", images, scores.T)):
            hits = _retrieval_hits(name, k, row_scores, rows, text_image)
            metrics[f"{name}_retrieval_recall@{k}"] = hits.sum().item() / len(hits)
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


def hit_rows(task: str, metric: str, num_classes: int = 0) -> str | None:
    """Over which rows ``metric`` is a fraction of hits: ``"images"`` (classification
    accuracies, text retrieval), ``"texts"`` (image retrieval), or None (mean per-class recall,
    acc5 under 5 classes, caption selection)."""
    if task == "zeroshot_classification":
        ks = _classification_ks(num_classes)
        return "images" if metric in [f"acc{k}" for k in ks] else None
    if task == "zeroshot_retrieval":
        return "texts" if metric.startswith("image_retrieval_recall@") else "images"
    return None


def row_hits(
    task: str, metric: str, scores: torch.Tensor, rows: torch.Tensor, targets: torch.Tensor
) -> torch.Tensor:
    """``(R,)`` bool hits of ``metric`` on the rows ``rows`` (indices into :func:`hit_rows`'s
    rows) from their ``(R, columns)`` scores: classes for images, images for texts, texts for
    images. ``targets``: every image's class, or every text's image."""
    if task == "zeroshot_classification":
        return topk_hits(scores, targets[rows], (int(metric[3:]),))[:, 0]
    name, k = metric.split("_retrieval_recall@")
    return _retrieval_hits(name, int(k), scores, rows, targets)


def _classification_ks(num_classes: int) -> tuple[int, ...]:
    return (1, 5) if num_classes >= 5 else (1,)


def _retrieval_hits(
    name: str, k: int, scores: torch.Tensor, rows: torch.Tensor, text_image: torch.Tensor
) -> torch.Tensor:
    """Whether a positive is among the top k of each row: for ``image`` retrieval the rows are
    texts and the columns images, for ``text`` retrieval the reverse."""
    if name == "image":
        positives = torch.zeros_like(scores, dtype=torch.bool)  # (texts, I)
        positives[torch.arange(len(rows), device=scores.device), text_image[rows]] = True
    else:
        positives = text_image[None, :] == rows[:, None]  # (images, T)
    top = scores.topk(min(k, scores.shape[1]), dim=1).indices
    return positives.gather(1, top).any(dim=1)
