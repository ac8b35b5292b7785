"""training.slot_stats: per-slot statistics logged during training."""

from __future__ import annotations

import math

import torch

from training.slot_stats import attention_entropy, slot_agreement


def test_attention_entropy_and_slot_agreement() -> None:
    uniform = torch.full((2, 3, 8), 1 / 8)
    one_hot = torch.zeros(2, 3, 8)
    one_hot[..., 0] = 1
    assert torch.allclose(attention_entropy(uniform), torch.full((3,), math.log(8)))
    assert torch.equal(attention_entropy(one_hot), torch.zeros(3))
    slots = torch.randn(4, 3, 5)
    assert torch.allclose(slot_agreement(slots, 2 * slots), torch.ones(3))
    assert torch.allclose(slot_agreement(slots, -slots), -torch.ones(3))
