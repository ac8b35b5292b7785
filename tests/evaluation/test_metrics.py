"""open_clip_sparo.evaluation.metrics: the metrics of each benchmark task."""

import pytest
import torch
from sklearn.metrics import balanced_accuracy_score

from open_clip_sparo.evaluation.metrics import (
    caption_selection_metrics,
    classification_metrics,
    retrieval_metrics,
)


def test_metrics_on_known_scores():
    scores = torch.tensor([[[0.9, 0.1]], [[0.2, 0.3]], [[0.5, 0.4]]])  # (N, 1 image, 2 captions)
    assert caption_selection_metrics(scores) == pytest.approx(
        {"image_acc": 1.0, "text_acc": 2 / 3, "acc": 2 / 3}
    )
    scores = torch.tensor([[0.9, 0.1, 0.0], [0.8, 0.7, 0.5], [0.1, 0.2, 0.3], [0.3, 0.2, 0.1]])
    text_image = torch.tensor([0, 1, 2, 2])  # (texts, images) scores
    metrics = retrieval_metrics(scores, text_image, recall_k=(1, 2))
    assert metrics["image_retrieval_recall@1"] == 0.5  # texts 0 and 2 rank their image first
    assert metrics["image_retrieval_recall@2"] == 0.75
    assert metrics["text_retrieval_recall@1"] == pytest.approx(2 / 3)  # image 2 ranks text 1 first
    logits = torch.randn(30, 6, generator=torch.Generator().manual_seed(1))
    targets = torch.arange(30) % 5  # class 5 never occurs but may be predicted
    expected = balanced_accuracy_score(targets, logits.argmax(1))
    assert classification_metrics(logits, targets)["mean_per_class_recall"] == pytest.approx(
        expected
    )
