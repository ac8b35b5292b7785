"""open_clip_sparo.util.metrics: the one top-k accuracy."""

import torch

from open_clip_sparo.util.metrics import topk_accuracy


def test_topk_accuracy():
    logits = torch.tensor([[0.1, 0.9, 0.0], [0.8, 0.1, 0.1], [0.2, 0.3, 0.5], [0.5, 0.4, 0.1]])
    target = torch.tensor([1, 2, 2, 1])
    assert topk_accuracy(logits, target, topk=(1, 2, 3)) == [0.5, 0.75, 1.0]
    # the linear probe passes float targets
    assert topk_accuracy(logits, target.float()) == [0.5]
